// Index math of the INT4 decode GEMM (gemv_int4.cuh), shared verbatim by the kernel (NVRTC,
// concatenated after common.cuh) and by host code: the runtime's launch planning and the CPU
// emulation test (tests/quant/test_int4_kernel_emulation.cpp), so the test checks the
// kernel's own arithmetic rather than a copy. Plain C++ that both g++ and NVRTC accept: no
// includes, no typedefs shared with common.cuh, no CUDA types.
//
// Vocabulary (docs/int4_kernels.md):
//   slab   16 packed input rows (one mma k16 step); KT = K / 16 slabs per matrix.
//   tile   64 output columns; n_tiles = N_pad / 64. Tile (kt, nb) = 128 words = 512 bytes.
//   chunk  U consecutive slabs of one tile, the unit of prefetch and of work distribution;
//          U divides the group's slab count, so a chunk never straddles a scale group.
//   split  a contiguous range of a tile's C = KT / U chunks, one block's share of the tile.
#ifndef QW4_INT4_INDEX_CUH
#define QW4_INT4_INDEX_CUH

#if defined(__CUDACC__)
#define QW4_HD __host__ __device__ __forceinline__
#else
#define QW4_HD inline
#endif

// `#pragma unroll` for the device compiler only (g++ warns on unknown pragmas).
#if defined(__CUDACC__)
#define QW4_UNROLL _Pragma("unroll")
#else
#define QW4_UNROLL
#endif

#define QW4_WARPS 8                   // warps per block
#define QW4_THREADS (QW4_WARPS * 32)  // threads per block

// ---- mma.m16n8k16 fragment coordinates (PTX ISA, "Matrix Fragments for mma.m16n8k16") ----
// g = lane / 4 (groupID), t = lane % 4 (threadID_in_group).
// A (16x16, row-major, the activations: row = batch row m, column = k within the slab).
// 32-bit register r (0..3) holds elements a_{2r}, a_{2r+1}; `half` selects the element.
QW4_HD int qw4_a_row(int r, int lane) {
  return (lane >> 2) + 8 * (r & 1);
}
QW4_HD int qw4_a_k(int r, int half, int lane) {
  return 2 * (lane & 3) + half + 8 * (r >> 1);
}
// B (16x8, "col", the weights: row = k within the slab, column = n within the n8 block).
// Register r (0..1) holds b_{2r}, b_{2r+1}.
QW4_HD int qw4_b_k(int r, int half, int lane) {
  return 2 * (lane & 3) + half + 8 * r;
}
QW4_HD int qw4_b_n(int lane) {
  return lane >> 2;
}
// C/D (16x8 fp32): element i (0..3) of a lane.
QW4_HD int qw4_c_row(int i, int lane) {
  return (lane >> 2) + 8 * (i >> 1);
}
QW4_HD int qw4_c_n(int i, int lane) {
  return 2 * (lane & 3) + (i & 1);
}

// ---- the packed tile (docs/int4_layout.md) ----
// First of lane's four words of tile (kt, nb): one 16-byte load.
QW4_HD long long qw4_tile_word(long long kt, long long nb, int lane, long long n_pad) {
  return kt * 2 * n_pad + nb * 128 + lane * 4;
}
// In word j (0..3) of a lane, the B register r of n8 block h (0..1) of the 16-column sub-tile
// j sits at nibbles shift and shift + 16: the pair (w >> shift) & 0x000f000f.
QW4_HD int qw4_b_shift(int h, int r) {
  return 4 * (2 * h + r);
}
// Tile column (0..63) of the n8 block h of sub-tile j: 16 j + 8 h + (column within the block).
QW4_HD int qw4_tile_col(int j, int h, int n8_col) {
  return 16 * j + 8 * h + n8_col;
}
// n8 block index (0..7) used for the per-lane register arrays.
QW4_HD int qw4_blk(int j, int h) {
  return 2 * j + h;
}

// Two fp16 values 1024 + code (exact) from a nibble pair: Marlin's magic-number trick.
QW4_HD unsigned qw4_magic_pair(unsigned w, int shift) {
  return ((w >> shift) & 0x000f000fu) | 0x64006400u;
}
// Two fp16 values 1024 + z (exact for z < 1024): subtracting it from the magic pair leaves
// code - z exactly (both operands are integers in [1024, 2048), where fp16 spacing is 1).
QW4_HD unsigned qw4_zero_pair(unsigned z) {
  return 0x64006400u | z | (z << 16);
}

// ---- work distribution ----
// Slabs per chunk (the unit of prefetch): the largest of 8/4/2/1 dividing the group's slab
// count (K/16 for a one-group matrix may be odd: then 1) and at most max_u.
QW4_HD constexpr int qw4_chunk_slabs(int group_slabs, int max_u) {
  return (max_u >= 8 && group_slabs % 8 == 0)   ? 8
         : (max_u >= 4 && group_slabs % 4 == 0) ? 4
         : (max_u >= 2 && group_slabs % 2 == 0) ? 2
                                                : 1;
}
// The kernels' chunk: 4 slabs for m8, 2 for m16 (twice the accumulators).
QW4_HD constexpr int qw4_kernel_chunk_slabs(int group_slabs, int mh) {
  return qw4_chunk_slabs(group_slabs, mh == 1 ? 4 : 2);
}
// Each warp streams its chunks through a private ring of shared-memory stages filled with
// cp.async (weights, the chunk's activations, scales and zeros), STAGES - 1 chunks ahead of
// the one it computes: 6 KiB (m8) or 4 KiB (m16) of weights in flight per warp, 16 warps per
// SM, and no registers spent on it. (The register double buffer before it kept 2 KiB per
// warp in flight and ran at ~35% of DRAM bandwidth.) Stage layout, bytes:
//   [0, 512 U)            the lanes' 16-byte weight words, slab v lane L at (32 v + L) * 16
//   [512 U, + 8 MH rows)  activations, row r at r * qw4_x_row_bytes(U) (16 bytes of padding
//                         put the 8 rows a fragment load touches in distinct banks)
//   then 128 bytes of scales and 64 of zeros (the tile's 64 columns of the chunk's group)
QW4_HD constexpr int qw4_pipeline_stages(int mh) {
  return mh == 1 ? 4 : 5;
}
QW4_HD constexpr int qw4_x_row_bytes(int u) {
  return u * 32 + 16;
}
QW4_HD constexpr int qw4_stage_x_offset(int u) {
  return u * 512;
}
QW4_HD constexpr int qw4_stage_scales_offset(int u, int mh) {
  return u * 512 + 8 * mh * qw4_x_row_bytes(u);
}
QW4_HD constexpr int qw4_stage_bytes(int u, int mh) {
  return qw4_stage_scales_offset(u, mh) + 128 + 64;
}
// Dynamic shared memory of a launch (the block's reduction reuses it after the loop).
QW4_HD constexpr int qw4_smem_bytes(int group_slabs, int mh) {
  return QW4_WARPS * qw4_pipeline_stages(mh) *
         qw4_stage_bytes(qw4_kernel_chunk_slabs(group_slabs, mh), mh);
}
// Split-K over blocks. The grid is (n_tiles, S): block (tile, s) owns the chunks
// [qw4_split_begin(C, S, s), qw4_split_begin(C, S, s + 1)) of its tile (C = KT / U chunks per
// tile), and warp w of the block takes chunks begin + w, begin + w + QW4_WARPS, ... The
// warps' sums meet in shared memory (in warp order), the S blocks' sums in the workspace (in
// split order, added by whichever block of the tile arrives last): no float atomics, so the
// result is bit-reproducible, and since S does not depend on the batch, a row's result is
// the same at every batch size a kernel variant serves.
QW4_HD int qw4_split_begin(int chunks, int splits, int s) {
  return int((long long)chunks * s / splits);
}
// Index of (tile, split s, batch row m, tile column c) in the partial-sum workspace.
QW4_HD long long qw4_partial_index(int tile, int splits, int s, int m, int c, int batch) {
  return (((long long)tile * splits + s) * batch + m) * 64 + c;
}
// ---- fused gate|up + SwiGLU (MODE 2) ----
// The fused matrix has 2I rows: gate [0, I), up [I, 2I). Output tile o (gate columns
// [64o, min(64o + 64, I))) can be written once its gate tile o and the tiles holding up
// columns [I + 64o, I + min(64o + 64, I)) are final; I need not be a multiple of 64.
QW4_HD int qw4_swiglu_out_tiles(int inter) {
  return (inter + 63) / 64;
}
// Number of distinct packed tiles output tile o waits for.
QW4_HD int qw4_swiglu_deps(int o, int inter) {
  const int end = (64 * o + 64 < inter ? 64 * o + 64 : inter);
  const int p_lo = (inter + 64 * o) / 64, p_hi = (inter + end - 1) / 64;
  return (p_hi - p_lo + 1) + ((o >= p_lo && o <= p_hi) ? 0 : 1);
}
// Output tiles that packed tile p feeds (distinct, at most 3); returns their number.
QW4_HD int qw4_swiglu_dependents(int p, int inter, int* out) {
  int n = 0;
  if (64 * p < inter) out[n++] = p;
  const int lo = (64 * p > inter ? 64 * p : inter),
            hi = (64 * p + 64 < 2 * inter ? 64 * p + 64 : 2 * inter);
  if (lo < hi)
    for (int o = (lo - inter) / 64; o <= (hi - 1 - inter) / 64; ++o)
      if (n == 0 || out[0] != o) out[n++] = o;
  return n;
}

// ---- launch planning (host) ----
// Resident blocks per SM the kernels are built for (__launch_bounds__ minimum blocks).
#define QW4_BLOCKS_PER_SM 2
// Splits S for a matrix of n_tiles tiles of `chunks` chunks on `resident` resident blocks
// (QW4_BLOCKS_PER_SM x SMs): the S in 1..min(chunks, 64) minimising waves x (chunks per warp
// + 1), where the + 1 stands for a block's fixed cost (the first DRAM round trip, the
// reductions). Ties go to the smaller S (fewer partial sums). Depends on the shape only.
QW4_HD int qw4_plan_splits(int n_tiles, int chunks, int resident) {
  if (resident < 1) resident = 1;
  int best = 1;
  long long best_cost = -1;
  const int max_s = chunks < 64 ? chunks : 64;
  for (int s = 1; s <= max_s; ++s) {
    const long long blocks = (long long)n_tiles * s;
    const long long waves = (blocks + resident - 1) / resident;
    const long long per_block = (chunks + s - 1) / s;
    const long long cost = waves * ((per_block + QW4_WARPS - 1) / QW4_WARPS + 1);
    if (best_cost < 0 || cost < best_cost) best = s, best_cost = cost;
  }
  return best;
}
// Where MODE 2's final gate|up values start in the workspace (after the partial sums).
QW4_HD long long qw4_fin_offset(int n_tiles, int splits, int batch) {
  return (long long)n_tiles * splits * batch * 64;
}
// Workspace floats the caller provides per launch (reusable across launches on one stream).
QW4_HD long long qw4_workspace_floats(int n_tiles, int splits, int batch, int n_pad, int mode) {
  return qw4_fin_offset(n_tiles, splits, batch) + (mode == 2 ? (long long)batch * n_pad : 0);
}
// Ints: one arrival counter per tile (+ one per SwiGLU output tile). Zero them once when
// the buffer is allocated; every launch leaves them zero again.
QW4_HD int qw4_counter_ints(int n_pad, int rows, int mode) {
  return n_pad / 64 + (mode == 2 ? qw4_swiglu_out_tiles(rows / 2) : 0);
}
// ---- per-lane steps of the GEMM main loop (device: the kernel; host: the emulation) ----
// fp16 helpers. Device: PTX conversions; host: exact software versions (normal numbers and
// zero only, which is all the emulation feeds them: scales, activations, small integers).
QW4_HD float qw4_h2f(unsigned short h) {
#ifdef __CUDA_ARCH__
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
#else
  const unsigned e = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  float v = e == 0 ? float(mant) * (1.0f / 16777216.0f)  // subnormal: mant * 2^-24
                   : float(mant | 0x400u) * (1.0f / 1024.0f);
  if (e > 0) {
    for (int i = 15; i < int(e); ++i) v *= 2.0f;
    for (int i = int(e); i < 15; ++i) v *= 0.5f;
  }
  return (h & 0x8000u) ? -v : v;
#endif
}
#ifndef __CUDA_ARCH__
// Host: fp16 bits of an integer-valued float |v| < 2048 (exact); the emulation's HSUB2.
inline unsigned short qw4_host_small_int_to_f16(float v) {
  if (v == 0.0f) return 0;
  unsigned sign = v < 0 ? 0x8000u : 0u;
  const unsigned a = unsigned(v < 0 ? -v : v);
  if (a >= 2048u || float(a) != (v < 0 ? -v : v)) return 0x7e00;  // never expected: NaN
  unsigned m = a;
  int shift = 0;
  while (m < 1024u) m <<= 1, ++shift;
  const unsigned e = 25 - unsigned(shift);  // a = m * 2^(e - 25), m in [1024, 2048)
  return (unsigned short)(sign | (e << 10) | (m & 0x3ffu));
}
#endif
// Two fp16 subtractions a - b (HSUB2). Exact for the magic pairs minus the zero pairs.
QW4_HD unsigned qw4_hsub2(unsigned a, unsigned b) {
#ifdef __CUDA_ARCH__
  unsigned d;
  asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
#else
  const float lo = qw4_h2f((unsigned short)(a & 0xffffu)) - qw4_h2f((unsigned short)(b & 0xffffu));
  const float hi = qw4_h2f((unsigned short)(a >> 16)) - qw4_h2f((unsigned short)(b >> 16));
  return unsigned(qw4_host_small_int_to_f16(lo)) | (unsigned(qw4_host_small_int_to_f16(hi)) << 16);
#endif
}

// u32 and u8 loads are generic (plain) on the device: the kernel reads scales and zeros from
// its shared-memory stage through qw4_load_scales / qw4_load_zeros.
QW4_HD unsigned qw4_ld_u32(const void* p) {
#ifdef __CUDA_ARCH__
  return *reinterpret_cast<const unsigned int*>(p);
#else
  unsigned v;
  __builtin_memcpy(&v, p, 4);
  return v;
#endif
}
QW4_HD unsigned qw4_ld_u16(const unsigned short* p) {
#ifdef __CUDA_ARCH__
  return __ldg(p);
#else
  return *p;
#endif
}
QW4_HD int qw4_ld_i32(const int* p) {
#ifdef __CUDA_ARCH__
  return __ldg(p);
#else
  return *p;
#endif
}
QW4_HD unsigned qw4_ld_u8(const unsigned char* p) {
  return *p;
}

// The 16 bytes lane `lane` loads for slab `slab` of tile `tile` (as 4 words).
struct Qw4Words {
  unsigned w[4];
};

// A fragment (4 registers) of slab `slab` for this lane: batch rows g and g + 8 (the latter
// only when MH == 2; rows >= batch are zero), k columns in packed order; with act-order the
// activations are gathered through perm (packed row k holds input feature perm[k]).
template <int MH>
QW4_HD void qw4_load_a(const unsigned short* x, const int* perm, int K, int batch, int slab,
                       int lane, unsigned* a) {
  QW4_UNROLL
  for (int r = 0; r < 4; ++r) {
    const int row = qw4_a_row(r, lane);
    const int k = slab * 16 + qw4_a_k(r, 0, lane);  // even: the pair (k, k + 1) is one word
    a[r] = 0;
    if ((MH == 2 || (r & 1) == 0) && row < batch) {
      const unsigned short* xr = x + (long long)row * K;
      if (perm == nullptr) {
        a[r] = qw4_ld_u32(xr + k);
      } else {
        a[r] = qw4_ld_u16(xr + qw4_ld_i32(perm + k)) |
               (qw4_ld_u16(xr + qw4_ld_i32(perm + k + 1)) << 16);
      }
    }
  }
}

// Per scale group: the zero point of each B column the lane dequantizes (column g of every n8
// block; packed as bytes, blk b in byte b % 4 of zq[b / 4]: 2 registers instead of 8 keep
// the m8 kernel within 128 registers) and the scale pair of each C column pair it
// accumulates (columns 2t, 2t + 1). Rows are [group][n_pad]; the kernel passes its stage's
// 64 columns as group 0, tile 0.
QW4_HD void qw4_load_zeros(const unsigned char* zeros, int zero_point, int group, int tile,
                           int n_pad, int lane, unsigned* zq) {
  const long long row = (long long)group * n_pad + (long long)tile * 64;
  zq[0] = zq[1] = 0;
  QW4_UNROLL
  for (int j = 0; j < 4; ++j) QW4_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int b = qw4_blk(j, h);
    const unsigned z =
        zeros ? qw4_ld_u8(zeros + row + qw4_tile_col(j, h, qw4_b_n(lane))) : unsigned(zero_point);
    zq[b >> 2] |= (z & 0xffu) << (8 * (b & 3));
  }
}
QW4_HD void qw4_load_scales(const unsigned short* scales, int group, int tile, int n_pad, int lane,
                            unsigned* sq) {
  const long long row = (long long)group * n_pad + (long long)tile * 64;
  QW4_UNROLL
  for (int j = 0; j < 4; ++j) QW4_UNROLL
  for (int h = 0; h < 2; ++h)
    sq[qw4_blk(j, h)] = qw4_ld_u32(scales + row + qw4_tile_col(j, h, qw4_c_n(0, lane)));
}
QW4_HD void qw4_load_group(const unsigned short* scales, const unsigned char* zeros, int zero_point,
                           int group, int tile, int n_pad, int lane, unsigned* zq, unsigned* sq) {
  qw4_load_zeros(zeros, zero_point, group, tile, n_pad, lane, zq);
  qw4_load_scales(scales, group, tile, n_pad, lane, sq);
}
// The zero pair (two fp16 1024 + z) of n8 block b from the packed bytes: one PRMT.
QW4_HD unsigned qw4_zero_pair_of(const unsigned* zq, int b) {
#ifdef __CUDA_ARCH__
  const unsigned i = unsigned(b & 3);
  return __byte_perm(zq[b >> 2], 0x64646464u, i | (4u << 4) | (i << 8) | (4u << 12));
#else
  return qw4_zero_pair((zq[b >> 2] >> (8 * (b & 3))) & 0xffu);
#endif
}

// The lane's nibble pairs at bits 0-3/16-19 (lo) and 4-7/20-23 (hi) of w, each OR-ed into
// fp16 0x6400 in one LOP3 (a LOP3 takes one immediate, so plain C++ costs an AND and an OR):
// lo = 1024 + code, hi = 1024 + 16 code.
template <unsigned MASK>
QW4_HD unsigned qw4_magic(unsigned w) {
#ifdef __CUDA_ARCH__
  unsigned r;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(r) : "r"(w), "n"(MASK), "n"(0x64006400));
  return r;
#else
  return (w & MASK) | 0x64006400u;
#endif
}
QW4_HD unsigned qw4_magic_lo(unsigned w) {
  return qw4_magic<0x000f000fu>(w);
}
QW4_HD unsigned qw4_magic_hi(unsigned w) {
  return qw4_magic<0x00f000f0u>(w);
}
// -(64 + z) from the zero pair 1024 + z: 960 - (1024 + z), exact (integers below 2048).
QW4_HD unsigned qw4_neg_zero_pair_hi(unsigned zz) {
#ifdef __CUDA_ARCH__
  unsigned d;
  asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(0x63806380u), "r"(zz));
  return d;
#else
  const float lo = 960.0f - qw4_h2f((unsigned short)(zz & 0xffffu));
  const float hi = 960.0f - qw4_h2f((unsigned short)(zz >> 16));
  return unsigned(qw4_host_small_int_to_f16(lo)) | (unsigned(qw4_host_small_int_to_f16(hi)) << 16);
#endif
}
// (1024 + 16 code) / 16 - (64 + z) = code - z in one HFMA2, exact (one rounding of an
// exact small integer).
QW4_HD unsigned qw4_hfma2_16th(unsigned hi, unsigned neg_zh) {
#ifdef __CUDA_ARCH__
  unsigned d;
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(hi), "r"(0x2c002c00u), "r"(neg_zh));
  return d;
#else
  const float lo = qw4_h2f((unsigned short)(hi & 0xffffu)) * 0.0625f +
                   qw4_h2f((unsigned short)(neg_zh & 0xffffu));
  const float h =
      qw4_h2f((unsigned short)(hi >> 16)) * 0.0625f + qw4_h2f((unsigned short)(neg_zh >> 16));
  return unsigned(qw4_host_small_int_to_f16(lo)) | (unsigned(qw4_host_small_int_to_f16(h)) << 16);
#endif
}
// The zero pairs of a chunk's 8 n8 blocks, both forms (lo path: 1024 + z; hi path:
// -(64 + z)): computed once per chunk, not once per slab.
QW4_HD void qw4_zero_pairs(const unsigned* zq, unsigned* zz, unsigned* nzh) {
  QW4_UNROLL
  for (int b = 0; b < 8; ++b) {
    zz[b] = qw4_zero_pair_of(zq, b);
    nzh[b] = qw4_neg_zero_pair_hi(zz[b]);
  }
}
// B fragments of the 8 n8 blocks from the lane's 16 bytes: b[blk][r] = two fp16 (code - zero).
// Register r of block h sits at nibble shift 4 (2h + r) (qw4_b_shift): after w >> 8h, r = 0
// is the lo pair and r = 1 the hi pair (Marlin's dequantization: one shift, two LOP3, one
// HSUB2 and one HFMA2 per 4 weights).
QW4_HD void qw4_b_frags_from_pairs(const Qw4Words& wd, const unsigned* zz, const unsigned* nzh,
                                   unsigned (*b)[2]) {
  QW4_UNROLL
  for (int j = 0; j < 4; ++j) QW4_UNROLL
  for (int h = 0; h < 2; ++h) {
    const unsigned w = wd.w[j] >> (8 * h);
    const int blk = qw4_blk(j, h);
    b[blk][0] = qw4_hsub2(qw4_magic_lo(w), zz[blk]);
    b[blk][1] = qw4_hfma2_16th(qw4_magic_hi(w), nzh[blk]);
  }
}
QW4_HD void qw4_b_frags(const Qw4Words& wd, const unsigned* zq, unsigned (*b)[2]) {
  unsigned zz[8], nzh[8];
  qw4_zero_pairs(zq, zz, nzh);
  qw4_b_frags_from_pairs(wd, zz, nzh, b);
}

// Group end: acc += scale * (sum over the group of x * (code - zero)). Keeping the scale out
// of the tensor-core operand makes the dequantization exact (the fp16 product scale * (code
// - zero) would round); the cost is one FMA per accumulator per group.
template <int MH, typename F>
QW4_HD void qw4_fold(F (*acc)[4], F (*gacc)[4], const unsigned* sq) {
  QW4_UNROLL
  for (int b = 0; b < 8; ++b) {
    const F s0 = F(qw4_h2f((unsigned short)(sq[b] & 0xffffu)));
    const F s1 = F(qw4_h2f((unsigned short)(sq[b] >> 16)));
    QW4_UNROLL
    for (int i = 0; i < 2 * MH; ++i) {
      acc[b][i] = ((i & 1) ? s1 : s0) * gacc[b][i] + acc[b][i];
      gacc[b][i] = F(0);
    }
  }
}

#endif  // QW4_INT4_INDEX_CUH

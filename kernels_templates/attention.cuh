// Attention: QKV bias + RoPE (plain or YaRN, through the inv_freq table and mscale) +
// paged-KV write, then paged attention (GQA-aware, flash-decoding split along the keys).
//
// Paged KV cache, per layer: k and v each [num_blocks][kKvHeads][kBlockTokens][kHeadDim].
// A token's slot is phys_block * kBlockTokens + offset; block tables map a sequence's
// logical block i to its physical block.

#define QW_D qwc::kHeadDim
#define QW_BT qwc::kBlockTokens
#define QW_G (qwc::kQHeads / qwc::kKvHeads)
#define QW_QKV_COLS ((qwc::kQHeads + 2 * qwc::kKvHeads) * qwc::kHeadDim)

// qkv: [rows, QW_QKV_COLS] fp32 GEMM output (no bias). Writes q (fp32, rotated, [rows,
// kQHeads, D]) and k, v (16-bit) into the cache at slots[r]. inv_freq: [D/2].
// cos/sin = cos/sin(pos * inv_freq[i]) * mscale, rotate_half convention (HF Qwen2).
// Launch: grid (rows, kQHeads + 2 * kKvHeads), block QW_ROPE_THREADS: block (r, h) does head h
// of row r (q heads, then k heads, then v heads). A block per head rather than per row:
// at batch 1 one block did the whole row serially (9 us of a ~190 us layer).
#define QW_ROPE_THREADS (QW_D / 2)
extern "C" __global__ void __launch_bounds__(QW_ROPE_THREADS)
    qkv_rope_kv(const float* __restrict__ qkv, const wt* __restrict__ bias,
                const int* __restrict__ positions, const long long* __restrict__ slots,
                const float* __restrict__ inv_freq, float mscale, float* __restrict__ q_out,
                wt* __restrict__ kc, wt* __restrict__ vc, int rows) {
  qw_pdl_trigger();
  qw_pdl_wait();
  const int r = blockIdx.x, h = blockIdx.y;
  if (r >= rows) return;
  const float* in = qkv + (long long)r * QW_QKV_COLS;
  const long long slot = slots[r];
  const long long blk = slot / QW_BT, off = slot - blk * QW_BT;
  constexpr int half = QW_D / 2;
  const int j = threadIdx.x;
  if (h >= qwc::kQHeads + qwc::kKvHeads) {  // a v head: bias, then into the cache
    const int vh = h - qwc::kQHeads - qwc::kKvHeads;
    wt* vo = vc + ((blk * qwc::kKvHeads + vh) * QW_BT + off) * QW_D;
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int d = j + e * half, c = h * QW_D + d;
      vo[d] = from_f32(in[c] + to_f32(bias[c]));
    }
    return;
  }
  const int c0 = h * QW_D + j, c1 = c0 + half;
  const float x0 = in[c0] + to_f32(bias[c0]);
  const float x1 = in[c1] + to_f32(bias[c1]);
  float s, c;
  sincosf(float(positions[r]) * inv_freq[j], &s, &c);
  c *= mscale;
  s *= mscale;
  const float y0 = x0 * c - x1 * s;
  const float y1 = x1 * c + x0 * s;
  if (h < qwc::kQHeads) {
    float* qo = q_out + ((long long)r * qwc::kQHeads + h) * QW_D;
    qo[j] = y0;
    qo[j + half] = y1;
  } else {
    const int kh = h - qwc::kQHeads;
    wt* ko = kc + ((blk * qwc::kKvHeads + kh) * QW_BT + off) * QW_D;
    ko[j] = from_f32(y0);
    ko[j + half] = from_f32(y1);
  }
}

#define QW_ATT_WARPS 4
#define QW_DPL (QW_D / 32)

// Shared memory of a decode attention block.
struct AttnShared {
  float qs[QW_G][QW_D];                 // the group's queries, times scale_log2
  float ps[QW_ATT_WARPS][QW_G][QW_BT];  // one warp's probabilities of its KV block
  float ml[QW_ATT_WARPS][QW_G][2];      // per warp: running max, sum
  float o[QW_ATT_WARPS][QW_G][QW_D];    // per warp: unnormalised output
};

// KV loads: read-only (nc) where the cache cannot change during the kernel; coherent where
// this kernel wrote the newest key itself (attention_decode).
template <bool kNc>
__device__ __forceinline__ uint4 kv_load16(const wt* p) {
  if constexpr (kNc) return ldg16(p);
  return *reinterpret_cast<const uint4*>(p);
}
template <bool kNc>
__device__ __forceinline__ uint2 kv_load8(const wt* p) {
  if constexpr (kNc) return __ldg(reinterpret_cast<const uint2*>(p));
  return *reinterpret_cast<const uint2*>(p);
}

// Keys of KV blocks [b0, b1) (positions <= pos) for kv head kh against sh.qs: each warp takes
// whole KV blocks (one key per lane) and leaves its softmax statistics and unnormalised
// output in sh.ml / sh.o. Ends with a barrier.
template <bool kNc>
__device__ __forceinline__ void attend_blocks(AttnShared& sh, const wt* __restrict__ kc,
                                              const wt* __restrict__ vc, const int* table, int kh,
                                              int pos, int b0, int b1) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float m[QW_G], l[QW_G], acc[QW_G][QW_DPL];
#pragma unroll
  for (int g = 0; g < QW_G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int d = 0; d < QW_DPL; ++d) acc[g][d] = 0.f;
  }

  for (int b = b0 + warp; b < b1; b += QW_ATT_WARPS) {
    const long long phys = table[b];
    const wt* kb = kc + (phys * qwc::kKvHeads + kh) * QW_BT * QW_D;
    const wt* vb = vc + (phys * qwc::kKvHeads + kh) * QW_BT * QW_D;
    float s[QW_G];
#pragma unroll
    for (int g = 0; g < QW_G; ++g) s[g] = 0.f;
    const wt* krow = kb + lane * QW_D;
#pragma unroll 4
    for (int c = 0; c < QW_D; c += 8) {
      float kf[8];
      unpack8(kv_load16<kNc>(krow + c), kf);
#pragma unroll
      for (int g = 0; g < QW_G; ++g) {
#pragma unroll
        for (int e = 0; e < 8; ++e) s[g] = fmaf(sh.qs[g][c + e], kf[e], s[g]);
      }
    }
    const bool valid = b * QW_BT + lane <= pos;
#pragma unroll
    for (int g = 0; g < QW_G; ++g) {
      const float sv = valid ? s[g] : -INFINITY;
      const float mn = fmaxf(m[g], warp_max(sv));  // finite: lane 0 of a block is valid
      const float corr = exp2f(m[g] - mn);
      const float p = exp2f(sv - mn);
      l[g] = l[g] * corr + p;  // per-lane partial sum, reduced at the end
#pragma unroll
      for (int d = 0; d < QW_DPL; ++d) acc[g][d] *= corr;
      m[g] = mn;
      sh.ps[warp][g][lane] = p;
    }
    __syncwarp();
    // Only the valid keys of the block: slots past `pos` may hold anything (even NaN), and
    // 0 * NaN would poison the sum.
    const int jmax = min(QW_BT, pos - b * QW_BT + 1);
#pragma unroll 4
    for (int j = 0; j < jmax; ++j) {
      float vf[QW_DPL];
      const wt* vrow = vb + j * QW_D + lane * QW_DPL;
      if constexpr (QW_DPL == 4) {
        const uint2 raw = kv_load8<kNc>(vrow);
        unpack2(raw.x, vf[0], vf[1]);
        unpack2(raw.y, vf[2], vf[3]);
      } else {
#pragma unroll
        for (int d = 0; d < QW_DPL; ++d) vf[d] = to_f32(vrow[d]);
      }
#pragma unroll
      for (int g = 0; g < QW_G; ++g) {
        const float p = sh.ps[warp][g][j];
#pragma unroll
        for (int d = 0; d < QW_DPL; ++d) acc[g][d] = fmaf(p, vf[d], acc[g][d]);
      }
    }
    __syncwarp();
  }

#pragma unroll
  for (int g = 0; g < QW_G; ++g) {
    const float lsum = warp_sum(l[g]);
    if (lane == 0) {
      sh.ml[warp][g][0] = m[g];
      sh.ml[warp][g][1] = lsum;
    }
#pragma unroll
    for (int d = 0; d < QW_DPL; ++d) sh.o[warp][g][lane * QW_DPL + d] = acc[g][d];
  }
  __syncthreads();
}

// The block's warps merged for head g of the group, dimension d: max M, sum L, output O.
__device__ __forceinline__ void merge_warps(const AttnShared& sh, int g, int d, float& M, float& L,
                                            float& O) {
  M = -INFINITY;
#pragma unroll
  for (int w = 0; w < QW_ATT_WARPS; ++w) M = fmaxf(M, sh.ml[w][g][0]);
  L = 0.f;
  O = 0.f;
  if (M != -INFINITY) {
#pragma unroll
    for (int w = 0; w < QW_ATT_WARPS; ++w) {
      const float f = exp2f(sh.ml[w][g][0] - M);
      L += sh.ml[w][g][1] * f;
      O += sh.o[w][g][d] * f;
    }
  }
}

// The block's result for row r, kv head kh, part z: the normalised output (whole: the row's
// only part) or the partial (unnormalised o; max, sum) at ((r, head) * nsplit + z), stored
// past L1 (another kernel, or the last part of this one, reads it).
__device__ __forceinline__ void write_block_result(const AttnShared& sh, int r, int kh, int z,
                                                   int nsplit, bool whole, wt* __restrict__ out,
                                                   float* __restrict__ part_o,
                                                   float* __restrict__ part_ml) {
  for (int i = threadIdx.x; i < QW_G * QW_D; i += blockDim.x) {
    const int g = i / QW_D, d = i - g * QW_D;
    float M, L, O;
    merge_warps(sh, g, d, M, L, O);
    const int h = kh * QW_G + g;
    if (whole) {
      out[((long long)r * qwc::kQHeads + h) * QW_D + d] = from_f32(O / L);
    } else {
      const long long pi = ((long long)r * qwc::kQHeads + h) * nsplit + z;
      __stcg(part_o + pi * QW_D + d, O);
      if (d == 0) __stcg(reinterpret_cast<float2*>(part_ml) + pi, make_float2(M, L));
    }
  }
}

// This row's keys split in nsplit parts of whole KV blocks: part z is [b0, b1).
__device__ __forceinline__ void split_range(int pos, int nsplit, int z, int& b0, int& b1) {
  const int nblk = pos / QW_BT + 1;
  const int bps = (nblk + nsplit - 1) / nsplit;  // each row splits its own context
  b0 = z * bps;
  b1 = min(b0 + bps, nblk);
}

// One block per (query row, kv head, split z of nsplit: z-th part of this row's keys). Each
// warp takes whole KV blocks (one key per lane), the group's QW_G query heads share every K/V
// load. Softmax in fp32 (base 2). nsplit == 1: writes out (16-bit, [rows, kQHeads, D])
// directly. nsplit > 1: writes partial (unnormalised o, max, sum) for attention_combine.
extern "C" __global__ void __launch_bounds__(QW_ATT_WARPS * 32)
    attention_paged(const float* __restrict__ q, const wt* __restrict__ kc,
                    const wt* __restrict__ vc, const int* __restrict__ row_seq,
                    const int* __restrict__ positions, const int* __restrict__ block_tables,
                    int bt_stride, int nsplit, float scale_log2, wt* __restrict__ out,
                    float* __restrict__ part_o, float* __restrict__ part_ml) {
  static_assert(QW_D % 32 == 0 && QW_D % 8 == 0, "head_dim must be a multiple of 32");
  static_assert(QW_BT == 32, "one KV block per warp iteration: 32 tokens");
  const int r = blockIdx.x, kh = blockIdx.y, z = blockIdx.z;
  __shared__ AttnShared sh;
  qw_pdl_trigger();
  qw_pdl_wait();

  const float* qr = q + ((long long)r * qwc::kQHeads + kh * QW_G) * QW_D;
  for (int i = threadIdx.x; i < QW_G * QW_D; i += blockDim.x)
    (&sh.qs[0][0])[i] = qr[i] * scale_log2;
  __syncthreads();

  const int pos = positions[r];
  int b0, b1;
  split_range(pos, nsplit, z, b0, b1);
  attend_blocks<true>(sh, kc, vc, block_tables + (long long)row_seq[r] * bt_stride, kh, pos, b0,
                      b1);
  write_block_result(sh, r, kh, z, nsplit, nsplit == 1, out, part_o, part_ml);
}

// Decode attention with the QKV epilogue and the split merge fused in (one launch per layer
// instead of three: at batch 1 the qkv_rope_kv and attention_combine launches cost about as
// much as their work). Rows are decode rows: one new token each, of distinct sequences.
// Block (r, kh, z) as attention_paged, except that a row uses only as many of the nsplit
// parts as it has KV blocks (short contexts: fewer partials to merge); the others return at
// once. Every block applies bias + RoPE to its group's queries itself (qkv_rope_kv's
// arithmetic, so q is bit-identical); the block whose part holds position pos also writes the
// new key and value into the cache and reads them back after a barrier (coherent loads: the
// cache changes during this kernel). With more than one part each block publishes its
// partial; the last of the row's parts to arrive (integer counter per (row, kv head), reset
// by it) merges them. counters: rows x kKvHeads ints, zero before the first launch.
// nsplit <= 32; partials are laid out with stride nsplit as for attention_combine.
#define QW_DEC_THREADS (QW_ATT_WARPS * 32)
#define QW_DEC_PER ((QW_G * QW_D + QW_DEC_THREADS - 1) / QW_DEC_THREADS)
extern "C" __global__ void __launch_bounds__(QW_DEC_THREADS)
    attention_decode(const float* __restrict__ qkv, const wt* __restrict__ bias,
                     const int* __restrict__ positions, const long long* __restrict__ slots,
                     const float* __restrict__ inv_freq, float mscale, wt* __restrict__ kc,
                     wt* __restrict__ vc, const int* __restrict__ row_seq,
                     const int* __restrict__ block_tables, int bt_stride, int nsplit,
                     float scale_log2, wt* __restrict__ out, float* __restrict__ part_o,
                     float* __restrict__ part_ml, int* __restrict__ counters) {
  constexpr int half = QW_D / 2;
  const int r = blockIdx.x, kh = blockIdx.y, z = blockIdx.z;
  __shared__ AttnShared sh;
  __shared__ float rc[half], rs[half];          // cos, sin (times mscale) of this row's position
  __shared__ float wz[QW_G][32], lz[QW_G][32];  // merge: split statistics, then weights
  __shared__ float lg[QW_G];
  __shared__ int last;
  qw_pdl_trigger();
  qw_pdl_wait();
  const int pos = positions[r];
  // Parts actually used: `parts` of bps KV blocks each (at least one per warp: a part's
  // warps run side by side, while every extra part costs the merge a serial round), all
  // non-empty.
  const int nblk = pos / QW_BT + 1;
  const int bps = max(QW_ATT_WARPS, (nblk + nsplit - 1) / nsplit);
  const int parts = (nblk + bps - 1) / bps;
  if (z >= parts) return;
  const int b0 = z * bps, b1 = min(b0 + bps, nblk);
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    float s, c;
    sincosf(float(pos) * inv_freq[j], &s, &c);
    rc[j] = c * mscale;
    rs[j] = s * mscale;
  }
  __syncthreads();
  const float* in = qkv + (long long)r * QW_QKV_COLS;
  // RoPE (rotate_half) of the head whose columns start at `base`: j < half pairs with j + half.
  auto rope = [&](int base, int d) {
    const int j = d < half ? d : d - half;
    const float x0 = in[base + j] + to_f32(bias[base + j]);
    const float x1 = in[base + j + half] + to_f32(bias[base + j + half]);
    return d < half ? x0 * rc[j] - x1 * rs[j] : x1 * rc[j] + x0 * rs[j];
  };
  for (int i = threadIdx.x; i < QW_G * QW_D; i += blockDim.x) {
    const int g = i / QW_D, d = i - g * QW_D;
    (&sh.qs[0][0])[i] = rope((kh * QW_G + g) * QW_D, d) * scale_log2;
  }
  if (z == parts - 1) {  // this part holds the new token
    const long long slot = slots[r];
    const long long blk = slot / QW_BT, off = slot - blk * QW_BT;
    const long long at = ((blk * qwc::kKvHeads + kh) * QW_BT + off) * QW_D;
    const int kbase = (qwc::kQHeads + kh) * QW_D,
              vbase = (qwc::kQHeads + qwc::kKvHeads + kh) * QW_D;
    for (int d = threadIdx.x; d < QW_D; d += blockDim.x) {
      kc[at + d] = from_f32(rope(kbase, d));
      vc[at + d] = from_f32(in[vbase + d] + to_f32(bias[vbase + d]));
    }
  }
  __syncthreads();  // queries in place; the new key and value visible to the block

  attend_blocks<false>(sh, kc, vc, block_tables + (long long)row_seq[r] * bt_stride, kh, pos, b0,
                       b1);
  write_block_result(sh, r, kh, z, nsplit, parts == 1, out, part_o, part_ml);
  if (parts == 1) return;
  __threadfence();
  __syncthreads();
  int* counter = counters + r * qwc::kKvHeads + kh;
  if (threadIdx.x == 0) last = atomicAdd(counter, 1) == parts - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  // The merge, in parallel: a thread per (head, part) loads the statistics, a thread per head
  // weighs them, and each thread sums its QW_DEC_PER outputs over the parts with all of their
  // loads in flight together.
  const long long base = ((long long)r * qwc::kQHeads + kh * QW_G) * nsplit;  // (head, part 0)
  for (int i = threadIdx.x; i < QW_G * parts; i += blockDim.x) {
    const int g = i / parts, s = i - g * parts;
    const float2 st =
        __ldcg(reinterpret_cast<const float2*>(part_ml) + base + (long long)g * nsplit + s);
    wz[g][s] = st.x;
    lz[g][s] = st.y;
  }
  __syncthreads();
  for (int g = threadIdx.x; g < QW_G; g += blockDim.x) {
    float M = -INFINITY;
    for (int s = 0; s < parts; ++s) M = fmaxf(M, wz[g][s]);  // finite: every part has keys
    float L = 0.f;
    for (int s = 0; s < parts; ++s) {
      const float f = exp2f(wz[g][s] - M);
      wz[g][s] = f;
      L += lz[g][s] * f;
    }
    lg[g] = L;
  }
  __syncthreads();
  float O[QW_DEC_PER];
#pragma unroll
  for (int k = 0; k < QW_DEC_PER; ++k) O[k] = 0.f;
#pragma unroll 4
  for (int s = 0; s < parts; ++s) {
#pragma unroll
    for (int k = 0; k < QW_DEC_PER; ++k) {
      const int i = int(threadIdx.x) + k * QW_DEC_THREADS;
      if (i < QW_G * QW_D) {
        const int g = i / QW_D, d = i - g * QW_D;
        O[k] =
            fmaf(__ldcg(part_o + ((base + (long long)g * nsplit + s) * QW_D + d)), wz[g][s], O[k]);
      }
    }
  }
#pragma unroll
  for (int k = 0; k < QW_DEC_PER; ++k) {
    const int i = int(threadIdx.x) + k * QW_DEC_THREADS;
    if (i < QW_G * QW_D) {
      const int g = i / QW_D;
      out[((long long)r * qwc::kQHeads + kh * QW_G) * QW_D + i] = from_f32(O[k] / lg[g]);
    }
  }
  if (threadIdx.x == 0) *counter = 0;
}

// Merges nsplit (<= QW_D, the host caps it at 32) partials per (row, head). Block: QW_D
// threads. Thread z reads split z's statistics, so the max and the sum are block
// reductions instead of a serial chain of dependent loads per thread.
extern "C" __global__ void attention_combine(const float* __restrict__ part_o,
                                             const float* __restrict__ part_ml, int nsplit,
                                             wt* __restrict__ out) {
  __shared__ float sf[QW_D];  // split z's weight exp2(m_z - M); 0 for empty splits
  __shared__ float red[32];
  qw_pdl_trigger();
  qw_pdl_wait();
  const int r = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
  const long long base = ((long long)r * qwc::kQHeads + h) * nsplit;
  const float mz = d < nsplit ? part_ml[(base + d) * 2] : -INFINITY;
  const float lz = d < nsplit ? part_ml[(base + d) * 2 + 1] : 0.f;
  const float wm = warp_max(mz);
  if ((d & 31) == 0) red[d >> 5] = wm;
  __syncthreads();
  float M = -INFINITY;
#pragma unroll
  for (int w = 0; w < QW_D / 32; ++w) M = fmaxf(M, red[w]);
  const float f = mz == -INFINITY ? 0.f : exp2f(mz - M);  // M finite: split 0 holds key 0
  sf[d] = f;
  const float L = block_sum(lz * f, red);  // its barriers also publish sf
  float O = 0.f;
  const float* po = part_o + base * QW_D + d;
#pragma unroll 8
  for (int z = 0; z < nsplit; ++z) {
    const float fz = sf[z];
    if (fz != 0.f) O = fmaf(po[(long long)z * QW_D], fz, O);
  }
  out[((long long)r * qwc::kQHeads + h) * QW_D + d] = from_f32(O / L);
}

// ---- Prefill attention on the tensor cores (flash-attention 2 style) ----
// One block of 4 warps per (query tile, q head); a tile is up to 64 consecutive rows of one
// sequence (tiles[i] = {first row, rows, position of the first row, block-table row}),
// each warp owns 16 query rows. Keys/values stream through shared memory in tiles of
// QW_FA_BN keys read from the paged cache with cp.async (V of tile j loads while S = Q K^T
// of tile j runs, K of tile j+1 while O += P V of tile j runs). S, softmax statistics (base
// 2) and O are fp32; Q and P enter the MMAs as 16-bit. Keys past the tile's last position
// are zero-filled (never read: stale slots may hold NaN); keys past each row's position
// are masked (causal). Rows of GQA groups share K/V through L2.
#define QW_FA_BM 64
#define QW_FA_BN (QW_D <= 128 ? 64 : 32)
#define QW_FA_THREADS 128
#define QW_FA_LDS (QW_D + 8)  // shared row stride: +16 bytes, conflict-free ldmatrix

extern "C" __global__ void __launch_bounds__(QW_FA_THREADS)
    attention_prefill_tc(const float* __restrict__ q, const wt* __restrict__ kc,
                         const wt* __restrict__ vc, const int4* __restrict__ tiles,
                         const int* __restrict__ block_tables, int bt_stride, float scale_log2,
                         wt* __restrict__ out) {
  constexpr int D = QW_D, BN = QW_FA_BN, LDS = QW_FA_LDS;
  constexpr int NT_S = BN / 8, NT_O = D / 8, KS_Q = D / 16;
  static_assert(D % 32 == 0 && NT_S % 2 == 0 && NT_O % 2 == 0, "flash tile shape");
  __shared__ __align__(16) wt ks[BN * LDS];
  __shared__ __align__(16) wt vs[BN * LDS];
  qw_pdl_trigger();
  qw_pdl_wait();
  const int4 tile = tiles[blockIdx.x];
  const int h = blockIdx.y, kh = h / QW_G;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int row_start = tile.x, nrows = tile.y, pos0 = tile.z;
  const int* table = block_tables + (long long)tile.w * bt_stride;
  const int last_pos = pos0 + nrows - 1;
  const int nkv = last_pos / BN + 1;

  // Q fragments (A operand, rows g and g + 8 of this warp's 16), rows past the tile clamped.
  const int r0 = warp * 16 + g, r1 = r0 + 8;
  const int rr0 = min(r0, nrows - 1), rr1 = min(r1, nrows - 1);
  const int p_r0 = pos0 + rr0, p_r1 = pos0 + rr1;
  u32 qa[KS_Q][4];
  {
    const float* q0 = q + ((long long)(row_start + rr0) * qwc::kQHeads + h) * D;
    const float* q1 = q + ((long long)(row_start + rr1) * qwc::kQHeads + h) * D;
#pragma unroll
    for (int k = 0; k < KS_Q; ++k) {
      const int c = k * 16 + 2 * t;
      const float2 a = *reinterpret_cast<const float2*>(q0 + c);
      const float2 b = *reinterpret_cast<const float2*>(q1 + c);
      const float2 a8 = *reinterpret_cast<const float2*>(q0 + c + 8);
      const float2 b8 = *reinterpret_cast<const float2*>(q1 + c + 8);
      qa[k][0] = pack2(a.x, a.y);
      qa[k][1] = pack2(b.x, b.y);
      qa[k][2] = pack2(a8.x, a8.y);
      qa[k][3] = pack2(b8.x, b8.y);
    }
  }

  auto load_tile = [&](wt* dst, const wt* cache, int j) {
    constexpr int CPR = D / 8;  // 16-byte chunks per key row
    for (int i = threadIdx.x; i < BN * CPR; i += QW_FA_THREADS) {
      const int row = i / CPR, c = i - row * CPR;
      const int key = j * BN + row;
      const wt* src = cache;
      int bytes = 0;
      if (key <= last_pos) {
        const long long phys = table[key / QW_BT];
        src = cache + ((phys * qwc::kKvHeads + kh) * QW_BT + (key % QW_BT)) * D + c * 8;
        bytes = 16;
      }
      cp_async16(dst + row * LDS + c * 8, src, bytes);
    }
    cp_async_commit();
  };

  float o[NT_O][4];
#pragma unroll
  for (int n = 0; n < NT_O; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  const int mi = lane >> 3, mr = lane & 7;  // ldmatrix: matrix index, row within it

  load_tile(ks, kc, 0);
  for (int j = 0; j < nkv; ++j) {
    cp_async_wait_all();
    __syncthreads();  // K_j visible; every warp is done with V_{j-1}
    load_tile(vs, vc, j);
    float s[NT_S][4];
#pragma unroll
    for (int n = 0; n < NT_S; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int k = 0; k < KS_Q; ++k) {
#pragma unroll
      for (int n = 0; n < NT_S; n += 2) {
        u32 b[4];
        ldsm_x4(b, ks + ((n + (mi >> 1)) * 8 + mr) * LDS + k * 16 + (mi & 1) * 8);
        mma16816(s[n], qa[k], b);
        mma16816(s[n + 1], qa[k], b + 2);
      }
    }
    // Scale, causal mask, online softmax (rows g and g + 8).
    const bool mask = j * BN + BN - 1 > pos0;
    float mx0 = m0, mx1 = m1;
#pragma unroll
    for (int n = 0; n < NT_S; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int key = j * BN + n * 8 + 2 * t + e;
        float v0 = s[n][e] * scale_log2, v1 = s[n][2 + e] * scale_log2;
        if (mask) {
          if (key > p_r0) v0 = -INFINITY;
          if (key > p_r1) v1 = -INFINITY;
        }
        s[n][e] = v0;
        s[n][2 + e] = v1;
        mx0 = fmaxf(mx0, v0);
        mx1 = fmaxf(mx1, v1);
      }
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    // Finite: key 0 (tile 0) is valid for every row.
    const float c0 = exp2f(m0 - mx0), c1 = exp2f(m1 - mx1);
    m0 = mx0;
    m1 = mx1;
    float ls0 = 0.f, ls1 = 0.f;
    u32 pa[NT_S / 2][4];
#pragma unroll
    for (int n = 0; n < NT_S; ++n) {
      const float p0 = exp2f(s[n][0] - mx0), p1 = exp2f(s[n][1] - mx0);
      const float p2 = exp2f(s[n][2] - mx1), p3 = exp2f(s[n][3] - mx1);
      ls0 += p0 + p1;
      ls1 += p2 + p3;
      pa[n >> 1][(n & 1) * 2 + 0] = pack2(p0, p1);
      pa[n >> 1][(n & 1) * 2 + 1] = pack2(p2, p3);
    }
    l0 = l0 * c0 + ls0;
    l1 = l1 * c1 + ls1;
#pragma unroll
    for (int n = 0; n < NT_O; ++n) {
      o[n][0] *= c0;
      o[n][1] *= c0;
      o[n][2] *= c1;
      o[n][3] *= c1;
    }
    cp_async_wait_all();
    __syncthreads();  // V_j visible; every warp is done with K_j
    if (j + 1 < nkv) load_tile(ks, kc, j + 1);
#pragma unroll
    for (int k = 0; k < BN / 16; ++k) {
#pragma unroll
      for (int n = 0; n < NT_O; n += 2) {
        u32 b[4];
        ldsm_x4_trans(b, vs + (k * 16 + (mi & 1) * 8 + mr) * LDS + (n + (mi >> 1)) * 8);
        mma16816(o[n], pa[k], b);
        mma16816(o[n + 1], pa[k], b + 2);
      }
    }
  }
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv0 = 1.f / l0, inv1 = 1.f / l1;
  if (r0 < nrows) {
    wt* dst = out + ((long long)(row_start + r0) * qwc::kQHeads + h) * D + 2 * t;
#pragma unroll
    for (int n = 0; n < NT_O; ++n)
      *reinterpret_cast<u32*>(dst + n * 8) = pack2(o[n][0] * inv0, o[n][1] * inv0);
  }
  if (r1 < nrows) {
    wt* dst = out + ((long long)(row_start + r1) * qwc::kQHeads + h) * D + 2 * t;
#pragma unroll
    for (int n = 0; n < NT_O; ++n)
      *reinterpret_cast<u32*>(dst + n * 8) = pack2(o[n][2] * inv1, o[n][3] * inv1);
  }
}

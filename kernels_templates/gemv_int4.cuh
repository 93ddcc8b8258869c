// INT4 (GPTQ, layout "qw-int4-m16x64-v1") x fp16 decode GEMMs for 1..16 activation rows, and
// the dequantization to dense fp16 used before cuBLAS in prefill. Concatenated after
// common.cuh and int4_index.cuh (the index math shared with the CPU emulation test) only for
// INT4 artifacts. Design notes and measurements: docs/int4_kernels.md.
//
//   MODE 0: y[b, n] = (W x)[b, n]               (fp32 out, y is [batch][N])
//   MODE 1: y[b, n] += (W x)[b, n]              (fused residual add)
//   MODE 2: yh[b, n] = silu(g) * u, g = (W x)[b, n], u = (W x)[b, I + n], n < I = N / 2
//           (fused gate|up + SwiGLU, fp16 out, yh is [batch][I])
//
// Shape of the computation. Decode is bound by streaming W once (0.5 byte per weight), so:
// * Every lane loads its own 16 bytes of a tile per slab (ld.global.nc.L1::no_allocate,
//   512 contiguous bytes per warp): the layout puts exactly the lane's mma B fragments there,
//   so no shared memory, no shuffles, and each weight byte is read once by one warp.
// * The weights are the B operand of mma.m16n8k16 (8 n8 blocks per slab); the activations are
//   the A operand, rows padded to 16 (m8 kernels: 8) with zeros. For batch 1 that wastes 15/16
//   of the tensor-core work, which is free: 8 MMAs per 512 bytes is far below the mma rate,
//   while a CUDA-core dot product would spend ~4x more issue slots on the same bytes.
// * Dequantization: (w >> 4i) & 0x000f000f | 0x64006400 gives two fp16 1024 + code, one HSUB2
//   against 1024 + zero gives code - zero exactly; the scale is applied in fp32 once per group
//   to the group's fp32 mma sum (qw4_fold), so W is applied exactly as the CPU reference
//   defines it, and the only rounding is fp32 accumulation.
// * Work distribution ("stream-K" over whole chunks): the n_tiles * C chunks of U slabs are
//   cut, tile-major, into one contiguous equal range per warp of the grid. Every warp streams
//   the same number of bytes whatever the shape (o_proj has 56 tiles, gate_up 592, down_proj
//   56 tiles of 1184 slabs), the grid is one wave of resident blocks (qw4_plan_grid), and the
//   prefetch of the next chunk runs across tile boundaries. A tile cut between warps is
//   finished by whichever contributor arrives last (integer arrival counter): it adds the
//   contributors' partial sums from the workspace in warp order, so the result does not
//   depend on timing (no float atomics; bit-reproducible for a given grid size). Each row of
//   the output is computed independently of the other rows, so results are also identical
//   across batch sizes for a given grid.
// * MODE 2 needs a gate column and its up column, which live in different tiles (I need not
//   be a multiple of 64): each finished tile stores its final values in the workspace and
//   bumps a counter of every SwiGLU output tile it feeds; the last one writes yh.
//
// Kernels (one per matrix and row count; launched with QW4_THREADS threads, no dynamic
// shared memory, grid = qw4_plan_grid(...) blocks, any grid >= 1 is correct):
//   NAME_m8  (batch 1..8), NAME_m16 (batch 1..16)
//   (const uint4* W, const wt* scales, const unsigned char* zeros /*null: symmetric*/,
//    const int* perm /*null: identity*/, int zero_point, const wt* x /*[batch][K] fp16*/,
//    float* y, wt* yh, float* ws, int* counters, int N /*logical rows*/, int n_pad, int batch)
// ws: qw4_workspace_floats(grid, batch, n_pad, MODE) floats; counters:
// qw4_counter_ints(n_pad, N, MODE) ints, zero before the first launch (each launch leaves
// them zero). One ws/counters pair per stream: concurrent launches must not share them.

#if QW_WEIGHT_BF16
#error "INT4 kernels take fp16 activations (INT4 artifacts keep their other tensors in fp16)"
#endif

__device__ __forceinline__ Qw4Words qw4_words(const uint4& v) {
  Qw4Words r;
  r.w[0] = v.x, r.w[1] = v.y, r.w[2] = v.z, r.w[3] = v.w;
  return r;
}

// d += a * b for one n8 block. MH == 1: A rows 8..15 are zero and their outputs unused, so
// c2/c3 are fed zero and discarded (no registers kept for them across the loop).
template <int MH>
__device__ __forceinline__ void qw4_mma(float* d, const unsigned* a, const unsigned* b) {
  if constexpr (MH == 2) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    float d2, d3;
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%10,%10};"
        : "+f"(d[0]), "+f"(d[1]), "=f"(d2), "=f"(d3)
        : "r"(a[0]), "r"(0u), "r"(a[2]), "r"(0u), "r"(b[0]), "r"(b[1]), "f"(0.f));
  }
}

// Writes the finished values of tile `tile` (C-fragment layout in acc) to the output.
template <int MODE, int MH>
__device__ __forceinline__ void qw4_finish_tile(float (*acc)[4], int tile, float* __restrict__ y,
                                                wt* __restrict__ yh, float* __restrict__ ws,
                                                int* __restrict__ counters, int N, int n_pad,
                                                int batch, int lane) {
  if constexpr (MODE != 2) {
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int i = 0; i < 2 * MH; ++i) {
          const int m = qw4_c_row(i, lane), n = tile * 64 + qw4_tile_col(j, h, qw4_c_n(i, lane));
          if (m < batch && n < N) {
            float* p = y + (long long)m * N + n;
            if constexpr (MODE == 1)
              *p += acc[qw4_blk(j, h)][i];
            else
              *p = acc[qw4_blk(j, h)][i];
          }
        }
  } else {
    const int inter = N >> 1, n_tiles = n_pad >> 6;
    float* fin = ws + qw4_workspace_floats(int(gridDim.x), batch, n_pad, 0);
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int i = 0; i < 2 * MH; ++i) {
          const int m = qw4_c_row(i, lane), n = tile * 64 + qw4_tile_col(j, h, qw4_c_n(i, lane));
          if (m < batch) __stcg(fin + (long long)m * n_pad + n, acc[qw4_blk(j, h)][i]);
        }
    __threadfence();
    __syncwarp();
    int outs[3];
    const int no = qw4_swiglu_dependents(tile, inter, outs);
    unsigned mine = 0;
    if (lane == 0)
      for (int q = 0; q < no; ++q)
        if (atomicAdd(counters + n_tiles + outs[q], 1) == qw4_swiglu_deps(outs[q], inter) - 1)
          mine |= 1u << q;
    mine = __shfl_sync(0xffffffffu, mine, 0);
    if (mine == 0) return;
    __threadfence();
    for (int q = 0; q < no; ++q) {
      if (!((mine >> q) & 1u)) continue;
      const int o = outs[q];
      for (int e = lane; e < batch * 64; e += 32) {
        const int m = e >> 6, n = o * 64 + (e & 63);
        if (n < inter) {
          const float g = __ldcg(fin + (long long)m * n_pad + n);
          const float u = __ldcg(fin + (long long)m * n_pad + inter + n);
          yh[(long long)m * inter + n] = from_f32(g / (1.f + expf(-g)) * u);
        }
      }
      if (lane == 0) counters[n_tiles + o] = 0;
    }
  }
}

// End of a warp's share of tile `tile` (acc: its partial, C-fragment layout): finish the tile
// when the warp holds all of it, else store the partial and, if it is the last contributor
// to arrive, add all contributors' partials in warp order (bit-reproducible) and finish.
template <int MODE, int MH>
__device__ __forceinline__ void qw4_tile_end(float (*acc)[4], int tile, int C, long long units,
                                             int workers, int w, float* __restrict__ y,
                                             wt* __restrict__ yh, float* __restrict__ ws,
                                             int* __restrict__ counters, int N, int n_pad,
                                             int batch, int lane) {
  const int wlo = qw4_worker_of((long long)tile * C, units, workers);
  const int whi = qw4_worker_of((long long)tile * C + C - 1, units, workers);
  if (wlo != whi) {
    const int slot = qw4_slot(w, tile, units, workers, C);
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int i = 0; i < 2 * MH; ++i) {
          const int m = qw4_c_row(i, lane);
          if (m < batch)
            __stcg(ws + qw4_partial_index(w, slot, m, qw4_tile_col(j, h, qw4_c_n(i, lane)), batch),
                   acc[qw4_blk(j, h)][i]);
        }
    __threadfence();
    __syncwarp();
    int last = 0;
    if (lane == 0) last = atomicAdd(counters + tile, 1) == whi - wlo;
    if (__shfl_sync(0xffffffffu, last, 0) == 0) return;
    __threadfence();
#pragma unroll
    for (int b = 0; b < 8; ++b)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[b][i] = 0.f;
    for (int c = wlo; c <= whi; ++c) {  // fixed order, whoever arrived last
      const int cs = qw4_slot(c, tile, units, workers, C);
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int i = 0; i < 2 * MH; ++i) {
            const int m = qw4_c_row(i, lane);
            if (m < batch)
              acc[qw4_blk(j, h)][i] += __ldcg(
                  ws + qw4_partial_index(c, cs, m, qw4_tile_col(j, h, qw4_c_n(i, lane)), batch));
          }
    }
    if (lane == 0) counters[tile] = 0;
  }
  qw4_finish_tile<MODE, MH>(acc, tile, y, yh, ws, counters, N, n_pad, batch, lane);
}

template <int K, int GROUP, int MODE, int MH>
__device__ __forceinline__ void qw4_gemm(const uint4* __restrict__ W, const wt* __restrict__ scales,
                                         const unsigned char* __restrict__ zeros,
                                         const int* __restrict__ perm, int zero_point,
                                         const wt* __restrict__ x, float* __restrict__ y,
                                         wt* __restrict__ yh, float* __restrict__ ws,
                                         int* __restrict__ counters, int N, int n_pad, int batch) {
  static_assert(K % 16 == 0 && GROUP % 16 == 0 && K % GROUP == 0, "bad INT4 geometry");
  static_assert(MODE >= 0 && MODE <= 2 && (MH == 1 || MH == 2), "bad INT4 kernel variant");
  constexpr int GS = GROUP / 16, U = qw4_kernel_chunk_slabs(GS, MH), C = K / 16 / U;
  const int lane = threadIdx.x & 31;
  const int n_tiles = n_pad >> 6;
  const long long units = (long long)n_tiles * C;
  const int workers = qw4_workers(units, (long long)gridDim.x * QW4_WARPS);
  const int w = int(blockIdx.x) * QW4_WARPS + int(threadIdx.x >> 5);
  if (w >= workers) return;
  long long u = qw4_begin(units, workers, w);
  const long long u_end = qw4_begin(units, workers, w + 1);
  const long long wstride = n_pad >> 1;  // uint4 per slab
  const uint4* wl = W + lane;

  Qw4Words wc[U];
  unsigned zc[2], sc[8];
  Qw4Chunk ch = qw4_chunk(u, C, U, GS);
  // Weights, scales and zeros are constant: fetch them before waiting on the previous kernel.
#pragma unroll
  for (int v = 0; v < U; ++v)
    wc[v] = qw4_words(ld_stream16(wl + (ch.slab + v) * wstride + ch.tile * 32));
  qw4_load_group(scales, zeros, zero_point, ch.group, ch.tile, n_pad, lane, zc, sc);
  qw_pdl_trigger();
  qw_pdl_wait();
  // The activations (a few KiB, L1/L2-resident: every warp reads them) are prefetched one
  // chunk ahead like the weights, so no L2 round trip sits on the chunk's critical path.
  unsigned ac[U][4];
#pragma unroll
  for (int v = 0; v < U; ++v) qw4_load_a<MH>(x, perm, K, batch, ch.slab + v, lane, ac[v]);

  float acc[8][4], gacc[8][4];
#pragma unroll
  for (int b = 0; b < 8; ++b)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[b][i] = gacc[b][i] = 0.f;

  for (;;) {
    // Issue the next chunk's loads before this chunk's math (one chunk of prefetch per warp;
    // with 16 resident warps per SM that keeps ~32 KiB of weights in flight per SM).
    const bool more = u + 1 < u_end;
    const Qw4Chunk nx = more ? qw4_chunk(u + 1, C, U, GS) : ch;
    const bool same_tile = more && nx.tile == ch.tile;
    const bool same_group = same_tile && nx.group == ch.group;
    Qw4Words wn[U];
    unsigned zn[2], sn[8], an[U][4];
    if (more) {
#pragma unroll
      for (int v = 0; v < U; ++v)
        wn[v] = qw4_words(ld_stream16(wl + (nx.slab + v) * wstride + nx.tile * 32));
      if (!same_group)
        qw4_load_group(scales, zeros, zero_point, nx.group, nx.tile, n_pad, lane, zn, sn);
#pragma unroll
      for (int v = 0; v < U; ++v) qw4_load_a<MH>(x, perm, K, batch, nx.slab + v, lane, an[v]);
    }
#pragma unroll
    for (int v = 0; v < U; ++v) {
      unsigned b[8][2];
      qw4_b_frags(wc[v], zc, b);
#pragma unroll
      for (int k = 0; k < 8; ++k) qw4_mma<MH>(gacc[k], ac[v], b[k]);
    }
    if (!same_group) qw4_fold<MH>(acc, gacc, sc);
    if (!same_tile) {
      qw4_tile_end<MODE, MH>(acc, ch.tile, C, units, workers, w, y, yh, ws, counters, N, n_pad,
                             batch, lane);
#pragma unroll
      for (int b = 0; b < 8; ++b)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[b][i] = 0.f;
    }
    if (!more) break;
    ++u;
    ch = nx;
#pragma unroll
    for (int v = 0; v < U; ++v) {
      wc[v] = wn[v];
#pragma unroll
      for (int r = 0; r < 4; ++r) ac[v][r] = an[v][r];
    }
    if (!same_group)
#pragma unroll
      for (int b = 0; b < 8; ++b) {
        sc[b] = sn[b];
        if (b < 2) zc[b] = zn[b];
      }
  }
}

#define QW4_GEMM_ARGS                                                                        \
  const uint4 *__restrict__ W, const wt *__restrict__ scales,                                \
      const unsigned char *__restrict__ zeros, const int *__restrict__ perm, int zero_point, \
      const wt *__restrict__ x, float *__restrict__ y, wt *__restrict__ yh,                  \
      float *__restrict__ ws, int *__restrict__ counters, int N, int n_pad, int batch
#define QW4_GEMM_PASS W, scales, zeros, perm, zero_point, x, y, yh, ws, counters, N, n_pad, batch
// One block per SM for both (qw4_kernel_chunk_slabs says why).
#define QW4_GEMM_INST(name, K, GROUP, MODE)                                                \
  extern "C" __global__ void __launch_bounds__(QW4_THREADS, QW4_BLOCKS_PER_SM) name##_m8(QW4_GEMM_ARGS) {  \
    qw4_gemm<K, GROUP, MODE, 1>(QW4_GEMM_PASS);                                            \
  }                                                                                        \
  extern "C" __global__ void __launch_bounds__(QW4_THREADS, QW4_BLOCKS_PER_SM) name##_m16(QW4_GEMM_ARGS) { \
    qw4_gemm<K, GROUP, MODE, 2>(QW4_GEMM_PASS);                                            \
  }

QW4_GEMM_INST(gemv_int4_qkv, qwc::kHidden, qwc::kInt4GroupQkv, 0)
QW4_GEMM_INST(gemv_int4_o_res, qwc::kQHeads* qwc::kHeadDim, qwc::kInt4GroupO, 1)
QW4_GEMM_INST(gemv_int4_gate_up_swiglu, qwc::kHidden, qwc::kInt4GroupGateUp, 2)
QW4_GEMM_INST(gemv_int4_down_res, qwc::kInter, qwc::kInt4GroupDown, 1)

// Dense fp16 W[n][c] (c in logical HF input order: packed row k goes to column perm[k]) for
// rows n < N, out row stride ld_out elements. Prefill dequantizes into scratch and calls
// cuBLAS; this pass is bound by its 4 bytes/weight of traffic (0.5 in, 2 out, ~1.5 L2).
// grid (n_pad / 64, ceil(K / 64)), block 128 (warp w: slab 4 * blockIdx.y + w), no dynamic
// shared memory. Each value is float(scale) * (code - zero), exact in fp32, rounded once to
// fp16 (RNE): bit-identical to the CPU reference rounded to fp16.
extern "C" __global__ void __launch_bounds__(128)
    int4_dequant_f16(const uint4* __restrict__ W, const wt* __restrict__ scales,
                     const unsigned char* __restrict__ zeros, const int* __restrict__ perm,
                     int zero_point, int K, int N, int n_pad, int group_size, wt* __restrict__ out,
                     long long ld_out) {
  __shared__ wt tile_s[64][64 + 2];  // [n][k]; +2 spreads the column writes over banks
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nb = blockIdx.x, kt = blockIdx.y * 4 + warp, k_slabs = K / 16;
  if (kt < k_slabs) {
    const Qw4Words wd = qw4_words(ld_stream16(W + (long long)kt * (n_pad >> 1) + nb * 32 + lane));
    const long long grow = (long long)(kt * 16 / group_size) * n_pad + (long long)nb * 64;
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int n = qw4_tile_col(j, h, qw4_b_n(lane));
        const float s = to_f32(scales[grow + n]);
        const int z = zeros ? int(zeros[grow + n]) : zero_point;
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int code = int((wd.w[j] >> (qw4_b_shift(h, r) + 16 * half)) & 0xfu);
            tile_s[n][warp * 16 + qw4_b_k(r, half, lane)] = from_f32(s * float(code - z));
          }
      }
  }
  qw_pdl_trigger();
  qw_pdl_wait();  // `out` may still be read by the previous kernel
  __syncthreads();
  const int k0 = blockIdx.y * 64;
  for (int e = threadIdx.x; e < 64 * 64; e += blockDim.x) {
    const int n = e >> 6, kk = e & 63, row = nb * 64 + n, k = k0 + kk;
    if (row < N && k < K) out[(long long)row * ld_out + (perm ? perm[k] : k)] = tile_s[n][kk];
  }
}

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
// * Work distribution (split-K over blocks): the grid is (n_tiles, S); block (tile, s) owns
//   a contiguous range of the tile's chunks (U slabs of one scale group), dealt to its 8
//   warps round-robin, each warp with its next chunk's loads in flight while it computes the
//   current one. The warps' sums meet in shared memory in warp order; with S > 1 each block
//   publishes its sum and the tile's last block to arrive (integer arrival counter) adds the
//   S sums in split order and finishes the tile. No float atomics: bit-reproducible, and S
//   depends on the matrix shape only (qw4_plan_splits), so a row's result is the same at any
//   batch size a variant serves. The weights of the first chunk are requested before the
//   PDL wait, so they stream while the previous kernel drains.
// * MODE 2 needs a gate column and its up column, which live in different tiles (I need not
//   be a multiple of 64): each finished tile stores its final values in the workspace and
//   bumps a counter of every SwiGLU output tile it feeds; the last one writes yh.
//
// Kernels (one per matrix and row count; launched with QW4_THREADS threads,
// qw4_smem_bytes(GROUP / 16, MH) bytes of dynamic shared memory, grid (n_pad / 64, S) with
// any 1 <= S; qw4_plan_splits picks S):
//   NAME_m8  (batch 1..8), NAME_m16 (batch 1..16)
//   (const uint4* W, const wt* scales, const unsigned char* zeros /*null: symmetric*/,
//    const int* perm /*null: identity*/, int zero_point, const wt* x /*[batch][K] fp16*/,
//    float* y, wt* yh, float* ws, int* counters, int N /*logical rows*/, int n_pad, int batch)
// ws: qw4_workspace_floats(n_pad / 64, S, batch, n_pad, MODE) floats; counters:
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

// Pulls the 128-byte line at p (a tile's 64 scales of one group) into L2, no register.
__device__ __forceinline__ void qw4_prefetch_l2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

// d += a * b for one n8 block. The accumulator is always a full C quad: with MH == 1 the A
// rows 8..15 are zero (a[1] = a[3] = 0), so d[2], d[3] stay zero. (Feeding zero constants
// for c2/c3 and discarding d2/d3 instead made ptxas build a fresh register quad around every
// HMMA: ~4 moves per mma, about a fifth of the m8 kernels' instructions.)
__device__ __forceinline__ void qw4_mma(float* d, const unsigned* a, const unsigned* b) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void qw4_cp16(void* smem, const void* gmem) {
  asm volatile(
      "cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(unsigned(__cvta_generic_to_shared(smem))),
      "l"(gmem)
      : "memory");
}
__device__ __forceinline__ void qw4_cp_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void qw4_cp_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
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
  constexpr int ROWS = 8 * MH, PER_THREAD = ROWS * 64 / QW4_THREADS;
  constexpr int P = qw4_pipeline_stages(MH), STAGE = qw4_stage_bytes(U, MH);
  constexpr int XOFF = qw4_stage_x_offset(U), XROW = qw4_x_row_bytes(U);
  constexpr int SOFF = qw4_stage_scales_offset(U, MH), ZOFF = SOFF + 128;
  static_assert(QW4_WARPS * ROWS * 64 * 4 <= QW4_WARPS * P * STAGE, "reduction must fit the ring");
  extern __shared__ __align__(16) unsigned char qw4_smem[];
  __shared__ int last_block, owned_outs[4];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int tile = blockIdx.x, splits = gridDim.y, split = blockIdx.y;
  const int c_first = qw4_split_begin(C, splits, split) + warp;
  const int c_end = qw4_split_begin(C, splits, split + 1);
  const int n_chunks = c_first < c_end ? (c_end - c_first + QW4_WARPS - 1) / QW4_WARPS : 0;
  const long long wstride = n_pad >> 1;  // uint4 per slab
  const uint4* wl = W + tile * 32 + lane;
  unsigned char* ring = qw4_smem + warp * (P * STAGE);

  // Chunk i of this warp is chunk c_first + 8 i of the block's range, in stage i % P.
  auto issue_constants = [&](int i) {  // weights, scales, zeros: no dependency on earlier kernels
    if (i >= n_chunks) return;
    const int c = c_first + i * QW4_WARPS;
    unsigned char* st = ring + (i % P) * STAGE;
#pragma unroll
    for (int v = 0; v < U; ++v) qw4_cp16(st + (v * 32 + lane) * 16, wl + (c * U + v) * wstride);
    const long long grow = (long long)(c * U / GS) * n_pad + tile * 64;
    if (lane < 8)
      qw4_cp16(st + SOFF + lane * 16, scales + grow + lane * 8);
    else if (zeros != nullptr && lane < 12)
      qw4_cp16(st + ZOFF + (lane - 8) * 16, zeros + grow + (lane - 8) * 16);
  };
  auto issue_x = [&](int i) {  // the activations (act-order gathers them per fragment instead)
    if (i >= n_chunks || perm != nullptr) return;
    const int c = c_first + i * QW4_WARPS;
    unsigned char* st = ring + (i % P) * STAGE + XOFF;
    constexpr int PIECES = U * 2;  // 16-byte pieces of one row's U * 16 activations
#pragma unroll
    for (int t = 0; t < (ROWS * PIECES + 31) / 32; ++t) {
      const int p = lane + 32 * t, r = p / PIECES, q = p % PIECES;
      if (p < batch * PIECES)
        qw4_cp16(st + r * XROW + q * 16, x + (long long)r * K + c * U * 16 + q * 8);
    }
  };

  // The first P - 1 chunks' constants go out before waiting on the previous kernel.
#pragma unroll
  for (int i = 0; i < P - 1; ++i) issue_constants(i);
  qw_pdl_trigger();
  qw_pdl_wait();
#pragma unroll
  for (int i = 0; i < P - 1; ++i) {
    issue_x(i);
    qw4_cp_commit();  // group i (group 0 also holds every prologue constant)
  }

  float acc[8][4], gacc[8][4];
#pragma unroll
  for (int b = 0; b < 8; ++b)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[b][i] = gacc[b][i] = 0.f;

  for (int i = 0; i < n_chunks; ++i) {
    issue_constants(i + P - 1);
    issue_x(i + P - 1);
    qw4_cp_commit();
    qw4_cp_wait<P - 1>();  // chunk i has landed (this lane's copies) ...
    __syncwarp();          // ... and every lane's
    const int c = c_first + i * QW4_WARPS;
    const unsigned char* st = ring + (i % P) * STAGE;
    unsigned zq[2], sq[8];
    qw4_load_zeros(zeros != nullptr ? st + ZOFF : nullptr, zero_point, 0, 0, 0, lane, zq);
    qw4_load_scales(reinterpret_cast<const unsigned short*>(st + SOFF), 0, 0, 0, lane, sq);
    unsigned zz[8], nzh[8];
    qw4_zero_pairs(zq, zz, nzh);
#pragma unroll
    for (int v = 0; v < U; ++v) {
      unsigned a[4];
      if (perm != nullptr) {
        qw4_load_a<MH>(x, perm, K, batch, c * U + v, lane, a);
      } else {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int row = qw4_a_row(r, lane);
          a[r] = (MH == 2 || (r & 1) == 0) && row < batch
                     ? *reinterpret_cast<const unsigned*>(st + XOFF + row * XROW +
                                                          2 * (16 * v + qw4_a_k(r, 0, lane)))
                     : 0u;
        }
      }
      const uint4 wv = *reinterpret_cast<const uint4*>(st + (v * 32 + lane) * 16);
      unsigned b[8][2];
      qw4_b_frags_from_pairs(qw4_words(wv), zz, nzh, b);
#pragma unroll
      for (int k = 0; k < 8; ++k) qw4_mma(gacc[k], a, b[k]);
    }
    qw4_fold<MH>(acc, gacc, sq);  // a chunk never straddles a group
    __syncwarp();                 // every lane is done with stage i % P before it is refilled
  }
  qw4_cp_wait<0>();
  __syncthreads();  // the ring becomes the block's reduction buffer
  float(*red)[ROWS * 64] = reinterpret_cast<float(*)[ROWS * 64]>(qw4_smem);

  // The block's sum, warps added in order.
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int i = 0; i < 2 * MH; ++i) {
        const int m = qw4_c_row(i, lane);
        if (m < batch)
          red[warp][m * 64 + qw4_tile_col(j, h, qw4_c_n(i, lane))] = acc[qw4_blk(j, h)][i];
      }
  __syncthreads();
  const int elems = batch * 64;  // element e: row e / 64, tile column e % 64
  float v[PER_THREAD];
#pragma unroll
  for (int q = 0; q < PER_THREAD; ++q) {
    const int e = int(threadIdx.x) + q * QW4_THREADS;
    v[q] = 0.f;
    if (e < elems)
#pragma unroll
      for (int w = 0; w < QW4_WARPS; ++w) v[q] += red[w][e];
  }
  const int n_tiles = int(gridDim.x);
  if (splits > 1) {
    // Publish this split's sum; the tile's last block to arrive adds all splits in order.
    float* part = ws + qw4_partial_index(tile, splits, split, 0, 0, batch);
#pragma unroll
    for (int q = 0; q < PER_THREAD; ++q) {
      const int e = int(threadIdx.x) + q * QW4_THREADS;
      if (e < elems) __stcg(part + e, v[q]);
    }
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_block = atomicAdd(counters + tile, 1) == splits - 1;
    __syncthreads();
    if (!last_block) return;
    __threadfence();
    const float* parts = ws + qw4_partial_index(tile, splits, 0, 0, 0, batch);
#pragma unroll
    for (int q = 0; q < PER_THREAD; ++q) {
      const int e = int(threadIdx.x) + q * QW4_THREADS;
      v[q] = 0.f;
      if (e < elems)
        for (int s = 0; s < splits; ++s) v[q] += __ldcg(parts + (long long)s * elems + e);
    }
    if (threadIdx.x == 0) counters[tile] = 0;
  }
  if constexpr (MODE != 2) {
#pragma unroll
    for (int q = 0; q < PER_THREAD; ++q) {
      const int e = int(threadIdx.x) + q * QW4_THREADS, n = tile * 64 + (e & 63);
      if (e < elems && n < N) {
        float* p = y + (long long)(e >> 6) * N + n;
        if constexpr (MODE == 1)
          *p += v[q];
        else
          *p = v[q];
      }
    }
  } else {
    // gate column n and up column I + n live in different tiles (I need not be a multiple of
    // 64): the tile's final values go to the workspace, and the last tile an output tile
    // waits for writes it.
    const int inter = N >> 1;
    float* fin = ws + qw4_fin_offset(n_tiles, splits, batch);
#pragma unroll
    for (int q = 0; q < PER_THREAD; ++q) {
      const int e = int(threadIdx.x) + q * QW4_THREADS;
      if (e < elems) __stcg(fin + (long long)(e >> 6) * n_pad + tile * 64 + (e & 63), v[q]);
    }
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
      int outs[3];
      const int no = qw4_swiglu_dependents(tile, inter, outs);
      int owned = 0;
      for (int q = 0; q < no; ++q)
        if (atomicAdd(counters + n_tiles + outs[q], 1) == qw4_swiglu_deps(outs[q], inter) - 1)
          owned_outs[owned++] = outs[q];
      owned_outs[3] = owned;
    }
    __syncthreads();
    const int owned = owned_outs[3];
    if (owned == 0) return;
    __threadfence();
    for (int q = 0; q < owned; ++q) {
      const int o = owned_outs[q];
      for (int e = int(threadIdx.x); e < elems; e += QW4_THREADS) {
        const int m = e >> 6, n = o * 64 + (e & 63);
        if (n < inter) {
          const float g = __ldcg(fin + (long long)m * n_pad + n);
          const float u = __ldcg(fin + (long long)m * n_pad + inter + n);
          yh[(long long)m * inter + n] = from_f32(g / (1.f + expf(-g)) * u);
        }
      }
      if (threadIdx.x == 0) counters[n_tiles + o] = 0;
    }
  }
}

#define QW4_GEMM_ARGS                                                                        \
  const uint4 *__restrict__ W, const wt *__restrict__ scales,                                \
      const unsigned char *__restrict__ zeros, const int *__restrict__ perm, int zero_point, \
      const wt *__restrict__ x, float *__restrict__ y, wt *__restrict__ yh,                  \
      float *__restrict__ ws, int *__restrict__ counters, int N, int n_pad, int batch
#define QW4_GEMM_PASS W, scales, zeros, perm, zero_point, x, y, yh, ws, counters, N, n_pad, batch
// Two blocks of 8 warps per SM for both (qw4_kernel_chunk_slabs says why).
#define QW4_GEMM_INST(name, K, GROUP, MODE)                                    \
  extern "C" __global__ void __launch_bounds__(QW4_THREADS, QW4_BLOCKS_PER_SM) \
      name##_m8(QW4_GEMM_ARGS) {                                               \
    qw4_gemm<K, GROUP, MODE, 1>(QW4_GEMM_PASS);                                \
  }                                                                            \
  extern "C" __global__ void __launch_bounds__(QW4_THREADS, QW4_BLOCKS_PER_SM) \
      name##_m16(QW4_GEMM_ARGS) {                                              \
    qw4_gemm<K, GROUP, MODE, 2>(QW4_GEMM_PASS);                                \
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

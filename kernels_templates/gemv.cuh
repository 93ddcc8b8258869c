// Decode GEMVs: y[b, n] = sum_k W[n, k] * x[b, k] for a few rows of activations (B <= 8).
// Memory-bound on W: 16-byte streaming loads, two weight rows per warp, U chunks of each
// row loaded before use so that 2*U independent 16-byte loads are in flight per lane.
// MODE 0: y = W x (fp32 out)        MODE 1: y += W x (fused residual add, fp32)
// MODE 2: fused gate|up + SwiGLU: rows n and n + N of W; yh[b, n] = silu(g) * u (16-bit).

#define QW_GEMV_THREADS 128

// U: 16-byte chunks per row and lane loaded before use (the per-lane accumulation order does
// not depend on U). U = 8 for the narrow matrices was measured slower than 4 on the H100
// (down 58 -> 64 us, o 14 -> 17 us, b8 GEMV step 7.4 -> 9.0 ms: 88-136 registers cut the
// blocks per SM), so every instance uses 4.
// ks (1, 2 or 4, a launch parameter): warps that share one row pair, each taking every
// ks-th group of 32 U chunks, their sums added in shared memory in warp order. A block of 4
// warps serves 4 / ks row pairs, grid ceil(pairs * ks / 4). o_proj, down_proj and qkv have
// only 1.8-2.3K row pairs: with ks = 1 that is 3.4-4.4 blocks per SM, and the SMs holding
// one block more set the kernel's time (qw_gemv_warps_per_pair picks ks for the shape).
template <int K, int MODE, int B, int U>
__device__ __forceinline__ void gemv_impl(const wt* __restrict__ W, const wt* __restrict__ x,
                                          float* __restrict__ y, wt* __restrict__ yh, int N,
                                          int ks) {
  static_assert(K % 8 == 0, "K must be a multiple of 8");
  constexpr int R = 2, WARPS = QW_GEMV_THREADS / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wg = blockIdx.x * (WARPS / ks) + warp / ks, part = warp % ks;
  long long rows[R];
  bool active;
  if constexpr (MODE == 2) {
    active = wg < N;
    rows[0] = active ? wg : 0;
    rows[1] = rows[0] + N;
  } else {
    const int n0 = wg * R;
    active = n0 < N;
    rows[0] = active ? n0 : 0;
    rows[1] = n0 + 1 < N ? n0 + 1 : rows[0];
  }
  float acc[R][B];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < B; ++b) acc[r][b] = 0.f;

  const wt* w0 = W + rows[0] * K;
  const wt* w1 = W + rows[1] * K;
  constexpr int kChunks = K / 8;  // 16-byte chunks per row
  uint4 wv[U][R];
  auto load = [&](int c0) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + u * 32 + lane;
      if (c < kChunks) {
        wv[u][0] = ld_stream16(w0 + c * 8);
        wv[u][1] = ld_stream16(w1 + c * 8);
      } else {
        wv[u][0] = make_uint4(0, 0, 0, 0);
        wv[u][1] = make_uint4(0, 0, 0, 0);
      }
    }
  };
  // The first weight loads (constant data) go out before waiting on the previous kernel.
  const int c_begin = active ? part * 32 * U : kChunks, c_step = ks * 32 * U;
  if (c_begin < kChunks) load(c_begin);
  qw_pdl_trigger();
  qw_pdl_wait();
  for (int c0 = c_begin; c0 < kChunks; c0 += c_step) {
    if (c0 > c_begin) load(c0);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + u * 32 + lane;
      if (c < kChunks) {
        float f0[8], f1[8];
        unpack8(wv[u][0], f0);
        unpack8(wv[u][1], f1);
#pragma unroll
        for (int b = 0; b < B; ++b) {
          float xf[8];
          unpack8(ldg16(x + (long long)b * K + c * 8), xf);
#pragma unroll
          for (int e = 0; e < 8; ++e) {
            acc[0][b] = fmaf(f0[e], xf[e], acc[0][b]);
            acc[1][b] = fmaf(f1[e], xf[e], acc[1][b]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < B; ++b) acc[r][b] = warp_sum(acc[r][b]);
  if (ks > 1) {
    __shared__ float red[WARPS][R][B];
    if (lane == 0)
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int b = 0; b < B; ++b) red[warp][r][b] = acc[r][b];
    __syncthreads();
    if (part != 0) return;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int b = 0; b < B; ++b) {
        float v = red[warp][r][b];
        for (int j = 1; j < ks; ++j) v += red[warp + j][r][b];
        acc[r][b] = v;
      }
  }
  if (lane == 0 && active) {
#pragma unroll
    for (int b = 0; b < B; ++b) {
      if constexpr (MODE == 2) {
        const float g = acc[0][b], u = acc[1][b];
        yh[(long long)b * N + rows[0]] = from_f32(g / (1.f + expf(-g)) * u);
      } else {
        float* yb = y + (long long)b * N;
        if constexpr (MODE == 1) {
          yb[rows[0]] += acc[0][b];
          if (rows[1] != rows[0]) yb[rows[1]] += acc[1][b];
        } else {
          yb[rows[0]] = acc[0][b];
          if (rows[1] != rows[0]) yb[rows[1]] = acc[1][b];
        }
      }
    }
  }
}

#define QW_GEMV_INST(name, K, MODE, B, U)                                                    \
  extern "C" __global__ void __launch_bounds__(QW_GEMV_THREADS)                              \
      name##_b##B(const wt* __restrict__ W, const wt* __restrict__ x, float* __restrict__ y, \
                  wt* __restrict__ yh, int N, int ks) {                                      \
    gemv_impl<K, MODE, B, U>(W, x, y, yh, N, ks);                                            \
  }
#define QW_GEMV_ALL_B(name, K, MODE, U) \
  QW_GEMV_INST(name, K, MODE, 1, U)     \
  QW_GEMV_INST(name, K, MODE, 2, U)     \
  QW_GEMV_INST(name, K, MODE, 3, U)     \
  QW_GEMV_INST(name, K, MODE, 4, U)     \
  QW_GEMV_INST(name, K, MODE, 5, U)     \
  QW_GEMV_INST(name, K, MODE, 6, U)     \
  QW_GEMV_INST(name, K, MODE, 7, U)     \
  QW_GEMV_INST(name, K, MODE, 8, U)

QW_GEMV_ALL_B(gemv_hidden, qwc::kHidden, 0, 4)                // qkv, lm_head
QW_GEMV_ALL_B(gemv_o_res, qwc::kQHeads* qwc::kHeadDim, 1, 4)  // o_proj + residual
QW_GEMV_ALL_B(gemv_gate_up_swiglu, qwc::kHidden, 2, 4)        // gate|up + SwiGLU
QW_GEMV_ALL_B(gemv_down_res, qwc::kInter, 1, 4)               // down_proj + residual

// Greedy: index of the largest logit per row (first on ties), one block per row.
extern "C" __global__ void argmax_rows(const float* __restrict__ logits, long long stride, int n,
                                       int* __restrict__ out) {
  qw_pdl_wait();
  const float* row = logits + blockIdx.x * stride;
  float best = -INFINITY;
  int bi = 0x7fffffff;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = row[i];
    if (v > best) {
      best = v;
      bi = i;
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > best || (ov == best && oi < bi)) {
      best = ov;
      bi = oi;
    }
  }
  __shared__ float sv[32];
  __shared__ int si[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = bi;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w)
      if (sv[w] > best || (sv[w] == best && si[w] < bi)) {
        best = sv[w];
        bi = si[w];
      }
    out[blockIdx.x] = bi;
  }
}

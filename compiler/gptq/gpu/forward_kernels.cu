// The calibration forward's small kernels (the linears are cuBLAS SGEMMs). Element-wise
// steps copy runtime/cpu's arithmetic with explicit IEEE intrinsics where that is possible
// (RoPE is then bit-identical); reductions (RMSNorm's sum of squares, attention's dot
// products and softmax sum) run in a different order than on the CPU, so activations agree
// to a few ulp, not bit for bit.
#include <cmath>

#include "compiler/gptq/gpu/kernels.h"

namespace qw::gptq::gpu {

namespace {

constexpr int kNormThreads = 256;
constexpr int kAttnWarps = 4;
// Softmax weights of a query live in shared memory, one row per warp.
constexpr int64_t kMaxAttnShared = 200 * 1024;

unsigned stride_grid(int64_t count, int threads) {
  const int64_t want = (count + threads - 1) / threads;
  return unsigned(want < 1 ? 1 : want > 65536 ? 65536 : want);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void __launch_bounds__(kNormThreads)
    rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w, int64_t dim,
                    double eps, float* __restrict__ y) {
  __shared__ double part[kNormThreads / 32];
  const int64_t t = blockIdx.x;
  const float* xt = x + t * dim;
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < dim; i += kNormThreads) ss += double(xt[i]) * double(xt[i]);
  ss = warp_sum(ss);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = ss;
  __syncthreads();
  double total = 0.0;
  for (int i = 0; i < kNormThreads / 32; ++i) total += part[i];
  const float inv = __double2float_rn(1.0 / sqrt(total / double(dim) + eps));
  for (int64_t i = threadIdx.x; i < dim; i += kNormThreads)
    y[t * dim + i] = __fmul_rn(w[i], __fmul_rn(xt[i], inv));
}

__global__ void add_bias_kernel(float* __restrict__ y, const float* __restrict__ bias,
                                int64_t tokens, int64_t dim) {
  const int64_t total = tokens * dim;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __fadd_rn(y[i], bias[i % dim]);
}

__global__ void rope_kernel(float* __restrict__ v, int64_t tokens, int64_t heads, int64_t head_dim,
                            const int32_t* __restrict__ pos, const float* __restrict__ cos_t,
                            const float* __restrict__ sin_t) {
  const int64_t half = head_dim / 2, total = tokens * heads * half;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = idx % half, th = idx / half, t = th / heads;
    float* x = v + th * head_dim;
    const float c = cos_t[int64_t(pos[t]) * half + j], s = sin_t[int64_t(pos[t]) * half + j];
    const float x1 = x[j], x2 = x[j + half];
    x[j] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
    x[j + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
  }
}

// One warp per (token, head), the same three passes as the CPU: scores and their max,
// exp(score - max) summed in double, then the output as an ordered sum of weight * v
// (the CPU's AVX2 axpy is an FMA, hence __fmaf_rn).
__global__ void __launch_bounds__(kAttnWarps * 32)
    attention_kernel(const float* __restrict__ q, const float* __restrict__ k,
                     const float* __restrict__ v, int64_t tokens, int64_t nq, int64_t nkv,
                     int64_t hd, const int32_t* __restrict__ start, int64_t max_len, float scale,
                     float* __restrict__ out) {
  extern __shared__ float weights[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t item = int64_t(blockIdx.x) * kAttnWarps + warp;
  if (item >= tokens * nq) return;  // whole warps only: no CTA-wide barrier below
  const int64_t t = item / nq, h = item % nq, kvh = h / (nq / nkv);
  const int64_t s0 = start[t], len = t - s0 + 1;
  if (len < 1 || len > max_len) return;  // the host checked start[]; never taken
  float* p = weights + int64_t(warp) * max_len;
  const float* qt = q + (t * nq + h) * hd;
  float mx = -INFINITY;
  for (int64_t s = 0; s < len; ++s) {
    const float* ks = k + ((s0 + s) * nkv + kvh) * hd;
    float part = 0.0f;
    for (int64_t d = lane; d < hd; d += 32) part = __fmaf_rn(qt[d], ks[d], part);
    const float sc = __fmul_rn(warp_sum(part), scale);  // every lane holds the same sum
    if (lane == 0) p[s] = sc;
    mx = sc > mx ? sc : mx;
  }
  __syncwarp();
  double sum = 0.0;
  for (int64_t s = lane; s < len; s += 32) {
    const float e = expf(__fsub_rn(p[s], mx));
    p[s] = e;
    sum += double(e);
  }
  sum = warp_sum(sum);
  __syncwarp();
  for (int64_t s = lane; s < len; s += 32) p[s] = __double2float_rn(double(p[s]) / sum);
  __syncwarp();
  for (int64_t d = lane; d < hd; d += 32) {
    float o = 0.0f;
    for (int64_t s = 0; s < len; ++s) o = __fmaf_rn(p[s], v[((s0 + s) * nkv + kvh) * hd + d], o);
    out[(t * nq + h) * hd + d] = o;
  }
}

__global__ void silu_mul_kernel(float* __restrict__ g, const float* __restrict__ u, int64_t count) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float x = g[i];
    g[i] = __fmul_rn(__fdiv_rn(x, __fadd_rn(1.0f, expf(-x))), u[i]);
  }
}

__global__ void add_kernel(float* __restrict__ x, const float* __restrict__ y, int64_t count) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = __fadd_rn(x[i], y[i]);
}

}  // namespace

cudaError_t launch_rms_norm(const float* x, const float* w, int64_t tokens, int64_t dim, double eps,
                            float* y, cudaStream_t s) {
  if (tokens <= 0 || dim <= 0 || tokens > 0x7fffffff) return cudaErrorInvalidValue;
  rms_norm_kernel<<<unsigned(tokens), kNormThreads, 0, s>>>(x, w, dim, eps, y);
  return cudaGetLastError();
}

cudaError_t launch_add_bias(float* y, const float* bias, int64_t tokens, int64_t dim,
                            cudaStream_t s) {
  if (tokens <= 0 || dim <= 0) return cudaErrorInvalidValue;
  add_bias_kernel<<<stride_grid(tokens * dim, 256), 256, 0, s>>>(y, bias, tokens, dim);
  return cudaGetLastError();
}

cudaError_t launch_rope(float* v, int64_t tokens, int64_t heads, int64_t head_dim,
                        const int32_t* pos, const float* cos_table, const float* sin_table,
                        cudaStream_t s) {
  if (tokens <= 0 || heads <= 0 || head_dim <= 0 || head_dim % 2 != 0) return cudaErrorInvalidValue;
  rope_kernel<<<stride_grid(tokens * heads * (head_dim / 2), 256), 256, 0, s>>>(
      v, tokens, heads, head_dim, pos, cos_table, sin_table);
  return cudaGetLastError();
}

cudaError_t launch_attention(const float* q, const float* k, const float* v, int64_t tokens,
                             int64_t nq, int64_t nkv, int64_t head_dim, const int32_t* start,
                             int64_t max_len, float scale, float* out, cudaStream_t s) {
  if (tokens <= 0 || nq <= 0 || nkv <= 0 || nq % nkv != 0 || head_dim <= 0 || max_len <= 0)
    return cudaErrorInvalidValue;
  const int64_t shared = int64_t(kAttnWarps) * max_len * int64_t(sizeof(float));
  if (shared > kMaxAttnShared) return cudaErrorInvalidValue;
  if (shared > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(
        attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared));
    if (e != cudaSuccess) return e;
  }
  const int64_t grid = (tokens * nq + kAttnWarps - 1) / kAttnWarps;
  if (grid > 0x7fffffff) return cudaErrorInvalidValue;
  attention_kernel<<<unsigned(grid), kAttnWarps * 32, size_t(shared), s>>>(
      q, k, v, tokens, nq, nkv, head_dim, start, max_len, scale, out);
  return cudaGetLastError();
}

cudaError_t launch_silu_mul(float* gate, const float* up, int64_t count, cudaStream_t s) {
  if (count <= 0) return cudaErrorInvalidValue;
  silu_mul_kernel<<<stride_grid(count, 256), 256, 0, s>>>(gate, up, count);
  return cudaGetLastError();
}

cudaError_t launch_add(float* x, const float* y, int64_t count, cudaStream_t s) {
  if (count <= 0) return cudaErrorInvalidValue;
  add_kernel<<<stride_grid(count, 256), 256, 0, s>>>(x, y, count);
  return cudaGetLastError();
}

}  // namespace qw::gptq::gpu

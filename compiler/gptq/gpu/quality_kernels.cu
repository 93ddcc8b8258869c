// The element-wise and reduction kernels around the DGEMM that measures a linear's held-out
// errors (quality_gpu.cpp). fp64 throughout: the forms x^T H x of the small differences
// W - Q partly cancel, so their sums are kept in double as on the CPU.
#include "compiler/gptq/gpu/kernels.h"

namespace qw::gptq::gpu {

namespace {

constexpr int kDotThreads = 256;

unsigned stride_grid(int64_t count, int threads) {
  const int64_t want = (count + threads - 1) / threads;
  return unsigned(want < 1 ? 1 : want > 65536 ? 65536 : want);
}

__global__ void mirror_lower_kernel(double* __restrict__ S, int64_t k) {
  const int64_t total = k * k;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t a = idx % k, b = idx / k;  // entry (a, b), column-major
    if (a < b) S[idx] = S[b + a * k];        // upper entry from its lower mirror (b, a)
  }
}

__global__ void weight_deltas_kernel(const float* __restrict__ w, WeightFormSources src,
                                     int64_t rows, int64_t k, double* __restrict__ B) {
  const int64_t total = rows * k;
  const int64_t nf = src.count;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / k, c = idx % k;
    const double wv = double(w[idx]);
    for (int64_t f = 0; f < nf; ++f) {
      const float* q = src.q[f];
      B[(nf * i + f) * k + c] = q ? __dsub_rn(wv, double(q[idx])) : wv;
    }
  }
}

__global__ void __launch_bounds__(kDotThreads)
    column_dots_kernel(const double* __restrict__ C, const double* __restrict__ B, int64_t k,
                       double* __restrict__ out) {
  __shared__ double part[kDotThreads / 32];
  const int64_t j = blockIdx.x;
  const double* c = C + j * k;
  const double* b = B + j * k;
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < k; i += kDotThreads) s = __fma_rn(c[i], b[i], s);
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int i = 0; i < kDotThreads / 32; ++i) total += part[i];
    out[j] = total;
  }
}

}  // namespace

cudaError_t launch_mirror_lower(double* S, int64_t k, cudaStream_t s) {
  if (k <= 0) return cudaErrorInvalidValue;
  mirror_lower_kernel<<<stride_grid(k * k, 256), 256, 0, s>>>(S, k);
  return cudaGetLastError();
}

cudaError_t launch_weight_deltas(const float* w, const WeightFormSources& q, int64_t rows,
                                 int64_t k, double* B, cudaStream_t s) {
  if (rows <= 0 || k <= 0 || q.count <= 0 || q.count > kMaxWeightForms)
    return cudaErrorInvalidValue;
  weight_deltas_kernel<<<stride_grid(rows * k, 256), 256, 0, s>>>(w, q, rows, k, B);
  return cudaGetLastError();
}

cudaError_t launch_column_dots(const double* C, const double* B, int64_t k, int64_t cols,
                               double* out, cudaStream_t s) {
  if (k <= 0 || cols <= 0 || cols > 0x7fffffff) return cudaErrorInvalidValue;
  column_dots_kernel<<<unsigned(cols), kDotThreads, 0, s>>>(C, B, k, out);
  return cudaGetLastError();
}

}  // namespace qw::gptq::gpu

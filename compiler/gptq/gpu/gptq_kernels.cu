// The GPTQ solver's kernels. Arithmetic that decides codes copies quantizer.cpp operation
// by operation with explicit IEEE intrinsics (__fmul_rn, __fsub_rn, __fdiv_rn, __ddiv_rn):
// nvcc would otherwise contract a * b - c into one FMA, which the CPU build never does, and
// one differently rounded weight can flip a code. Given the same U, the GPU's codes, scales
// and zeros are then bit-identical to quantize_gptq's.
#include <cuda_fp16.h>

#include "compiler/gptq/gpu/kernels.h"

namespace qw::gptq::gpu {

namespace {

constexpr int kMaxQ = 15;
constexpr int kSolveThreads = 64;  // rows per CTA of the column kernel
constexpr int kLazyTile = 64;      // rows and columns per CTA of the lazy update
constexpr int kLazyChunk = 32;     // block columns staged in shared memory at a time
constexpr int kLazyThreads = 256;  // 16 x 16 threads, 4 x 4 outputs each

// std::min / std::max / std::clamp exactly (their NaN and signed-zero behaviour included).
__device__ __forceinline__ float std_min(float a, float b) {
  return (b < a) ? b : a;
}
__device__ __forceinline__ float std_max(float a, float b) {
  return (a < b) ? b : a;
}
__device__ __forceinline__ float std_clamp(float v, float lo, float hi) {
  return (v < lo) ? lo : (hi < v) ? hi : v;
}

// core/half.h f32_to_f16, bit for bit.
__device__ uint16_t f32_to_f16_bits(float f) {
  const uint32_t b = __float_as_uint(f);
  const uint16_t sign = uint16_t((b >> 16) & 0x8000u);
  const uint32_t abs = b & 0x7fffffffu;
  if (abs >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);
  if (abs < 0x38800000u) {
    if (abs < 0x33000000u) return sign;
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;
    const uint32_t shifted = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    uint32_t r = shifted;
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = abs - 0x38000000u;
  r += 0xfffu + ((r >> 13) & 1u);
  return uint16_t(sign | (r >> 13));
}
__device__ __forceinline__ float f16_bits_to_f32(uint16_t h) {
  return __half2float(__ushort_as_half(h));
}

struct Params {
  float scale;
  int zero;
};

// quantizer.cpp find_params.
__device__ Params find_params(float lo, float hi, bool sym, uint16_t& s16) {
  float xmin = std_min(lo, 0.0f), xmax = std_max(hi, 0.0f);
  if (sym) {
    xmax = std_max(-xmin, xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) xmin = -1, xmax = 1;
  const float scale = __fdiv_rn(__fsub_rn(xmax, xmin), float(kMaxQ));
  s16 = f32_to_f16_bits(std_min(scale, 65504.0f));
  if ((s16 & 0x7fff) == 0) s16 = 0x0001;
  Params p;
  p.scale = f16_bits_to_f32(s16);
  p.zero =
      sym ? (kMaxQ + 1) / 2 : int(std_clamp(rintf(__fdiv_rn(-xmin, p.scale)), 0.0f, float(kMaxQ)));
  return p;
}

__device__ __forceinline__ int quantize_one(float x, const Params& p) {
  return int(std_clamp(__fadd_rn(rintf(__fdiv_rn(x, p.scale)), float(p.zero)), 0.0f, float(kMaxQ)));
}
__device__ __forceinline__ float dequantize_one(int q, const Params& p) {
  return __fmul_rn(p.scale, float(q - p.zero));
}

__global__ void to_double_kernel(const float* __restrict__ x, int64_t count,
                                 double* __restrict__ y) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = double(x[i]);
}

// y[i * k + c] = double(x[rows[i] * k + c]): the damping search's fit or validation rows.
__global__ void gather_to_double_kernel(const float* __restrict__ x,
                                        const int32_t* __restrict__ rows, int64_t count, int64_t k,
                                        double* __restrict__ y) {
  const int64_t total = count * k;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / k, c = i % k;
    y[i] = double(x[int64_t(rows[r]) * k + c]);
  }
}

// Lower triangles (column-major k x k, entry (a, b), a >= b, at a + b * k): S += X.
__global__ void add_lower_kernel(double* __restrict__ S, const double* __restrict__ X, int64_t k) {
  const int64_t total = k * k;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    if (i % k >= i / k) S[i] = __dadd_rn(S[i], X[i]);
}

__global__ void hessian_diag_kernel(const double* __restrict__ S, int64_t sa, int64_t sb, int64_t k,
                                    double scale, double* __restrict__ diag) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c < k) diag[c] = __dmul_rn(S[c * sa + c * sb], scale);
}

__global__ void build_damped_kernel(const double* __restrict__ S, int64_t sa, int64_t sb, int64_t k,
                                    double scale, const int64_t* __restrict__ perm,
                                    const uint8_t* __restrict__ dead, double damp_add,
                                    double* __restrict__ A) {
  const int64_t total = k * k;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / k, j = idx % k;
    const int64_t pi = perm[i], pj = perm[j];
    const int64_t a = pi > pj ? pi : pj, b = pi > pj ? pj : pi;
    double v = (pi == pj && dead[pi]) ? 1.0 : __dmul_rn(S[a * sa + b * sb], scale);
    if (i == j) v = __dadd_rn(v, damp_add);
    A[idx] = v;
  }
}

__global__ void split_factor_kernel(const double* __restrict__ U, int64_t k, float* __restrict__ uf,
                                    double* __restrict__ ud) {
  const int64_t total = k * k;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / k, j = idx % k;
    uf[idx] = j >= i ? __double2float_rn(U[idx]) : 0.0f;
    if (i == j) ud[i] = U[idx];
  }
}

__global__ void permute_transpose_kernel(const float* __restrict__ w, int64_t n, int64_t k,
                                         const int64_t* __restrict__ perm,
                                         const uint8_t* __restrict__ dead, float* __restrict__ wp) {
  const int64_t total = n * k;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / n, r = idx % n;
    const int64_t c = perm[i];
    wp[idx] = dead[c] ? 0.0f : w[r * k + c];
  }
}

// One thread per output row walks the block's columns in order (the rows are independent
// given U). The row's block columns live in shared memory, [column][thread] so a warp's
// accesses hit distinct banks; no thread reads another's column, so there is no barrier.
__global__ void __launch_bounds__(kSolveThreads)
    gptq_block_kernel(float* __restrict__ wp, const double* __restrict__ ud,
                      const float* __restrict__ uf, int64_t n, int64_t k, int64_t i1, int64_t i2,
                      int64_t gs, bool sym, const int64_t* __restrict__ perm,
                      uint8_t* __restrict__ codes, uint16_t* __restrict__ scales,
                      uint8_t* __restrict__ zeros, float* __restrict__ err) {
  __shared__ float col[kMaxGptqBlock][kSolveThreads];
  const int t = threadIdx.x;
  const int64_t r = int64_t(blockIdx.x) * kSolveThreads + t;
  if (r >= n) return;
  const int B = int(i2 - i1);
  for (int j = 0; j < B; ++j) col[j][t] = wp[(i1 + j) * n + r];
  // A group begun in an earlier block keeps its parameters: they are the ones stored.
  Params p{1.0f, 0};
  if (i1 % gs != 0) {
    const int64_t g = i1 / gs;
    p.scale = f16_bits_to_f32(scales[g * n + r]);
    p.zero = zeros[g * n + r];
  }
  for (int jj = 0; jj < B; ++jj) {
    const int64_t i = i1 + jj;
    if (i % gs == 0) {
      // The group's range from the weights as updated so far: columns of this block from
      // shared memory, later ones (a group wider than the block) from Wp, which has every
      // earlier block's lazy update but not this block's -- as on the CPU.
      float lo = col[jj][t], hi = lo;
      for (int64_t c = i + 1; c < i + gs; ++c) {
        const float v = c < i2 ? col[c - i1][t] : wp[c * n + r];
        lo = std_min(lo, v);
        hi = std_max(hi, v);
      }
      uint16_t s16 = 0;
      p = find_params(lo, hi, sym, s16);
      scales[(i / gs) * n + r] = s16;
      zeros[(i / gs) * n + r] = uint8_t(p.zero);
    }
    const float x = col[jj][t];
    const int q = quantize_one(x, p);
    codes[perm[i] * n + r] = uint8_t(q);
    const float e =
        __double2float_rn(__ddiv_rn(__dsub_rn(double(x), double(dequantize_one(q, p))), ud[i]));
    err[int64_t(jj) * n + r] = e;
    const float* urow = uf + i * k + i1;
    for (int j = jj + 1; j < B; ++j) col[j][t] = __fsub_rn(col[j][t], __fmul_rn(e, urow[j]));
  }
}

// A GEMM-shaped update whose per-element order is the CPU's: for each output the block's
// columns are applied one after another, each as a rounded product then a rounded difference.
__global__ void __launch_bounds__(kLazyThreads)
    gptq_lazy_kernel(float* __restrict__ wp, const float* __restrict__ uf,
                     const float* __restrict__ err, int64_t n, int64_t k, int64_t i1, int64_t i2) {
  __shared__ float es[kLazyChunk][kLazyTile];
  __shared__ float us[kLazyChunk][kLazyTile];
  const int tid = threadIdx.x, tr = tid % 16, tj = tid / 16;
  const int64_t r0 = int64_t(blockIdx.x) * kLazyTile, j0 = i2 + int64_t(blockIdx.y) * kLazyTile;
  float acc[4][4];
#pragma unroll
  for (int b = 0; b < 4; ++b)
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const int64_t r = r0 + tr + 16 * a, j = j0 + tj + 16 * b;
      acc[b][a] = (r < n && j < k) ? wp[j * n + r] : 0.0f;
    }
  const int B = int(i2 - i1);
  for (int c0 = 0; c0 < B; c0 += kLazyChunk) {
    const int cn = min(kLazyChunk, B - c0);
    for (int idx = tid; idx < kLazyChunk * kLazyTile; idx += kLazyThreads) {
      const int ii = idx / kLazyTile, x = idx % kLazyTile;
      es[ii][x] = (ii < cn && r0 + x < n) ? err[int64_t(c0 + ii) * n + r0 + x] : 0.0f;
      us[ii][x] = (ii < cn && j0 + x < k) ? uf[(i1 + c0 + ii) * k + j0 + x] : 0.0f;
    }
    __syncthreads();
    for (int ii = 0; ii < cn; ++ii) {
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        const float f = us[ii][tj + 16 * b];
        if (f == 0.0f) continue;
#pragma unroll
        for (int a = 0; a < 4; ++a)
          acc[b][a] = __fsub_rn(acc[b][a], __fmul_rn(es[ii][tr + 16 * a], f));
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int b = 0; b < 4; ++b)
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const int64_t r = r0 + tr + 16 * a, j = j0 + tj + 16 * b;
      if (r < n && j < k) wp[j * n + r] = acc[b][a];
    }
}

__global__ void dequantize_kernel(const uint8_t* __restrict__ codes,
                                  const uint16_t* __restrict__ scales,
                                  const uint8_t* __restrict__ zeros,
                                  const int32_t* __restrict__ g_idx, int64_t n, int64_t k,
                                  float* __restrict__ w) {
  const int64_t total = n * k;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / k, c = idx % k;
    const int64_t gi = int64_t(g_idx[c]) * n + r;
    w[idx] = __fmul_rn(f16_bits_to_f32(scales[gi]), float(int(codes[c * n + r]) - int(zeros[gi])));
  }
}

// Grid for a grid-stride loop over `count` items: enough CTAs to fill the GPU, not more.
unsigned stride_grid(int64_t count, int threads) {
  const int64_t want = (count + threads - 1) / threads;
  return unsigned(want < 1 ? 1 : want > 65536 ? 65536 : want);
}

}  // namespace

cudaError_t launch_to_double(const float* x, int64_t count, double* y, cudaStream_t s) {
  if (count <= 0) return cudaSuccess;
  to_double_kernel<<<stride_grid(count, 256), 256, 0, s>>>(x, count, y);
  return cudaGetLastError();
}

cudaError_t launch_gather_to_double(const float* x, const int32_t* rows, int64_t count, int64_t k,
                                    double* y, cudaStream_t s) {
  if (count <= 0) return cudaSuccess;
  if (k <= 0) return cudaErrorInvalidValue;
  gather_to_double_kernel<<<stride_grid(count * k, 256), 256, 0, s>>>(x, rows, count, k, y);
  return cudaGetLastError();
}

cudaError_t launch_add_lower(double* S, const double* X, int64_t k, cudaStream_t s) {
  if (k <= 0) return cudaErrorInvalidValue;
  add_lower_kernel<<<stride_grid(k * k, 256), 256, 0, s>>>(S, X, k);
  return cudaGetLastError();
}

cudaError_t launch_hessian_diag(const double* S, int64_t sa, int64_t sb, int64_t k, double scale,
                                double* diag, cudaStream_t s) {
  if (k <= 0) return cudaErrorInvalidValue;
  hessian_diag_kernel<<<unsigned((k + 255) / 256), 256, 0, s>>>(S, sa, sb, k, scale, diag);
  return cudaGetLastError();
}

cudaError_t launch_build_damped(const double* S, int64_t sa, int64_t sb, int64_t k, double scale,
                                const int64_t* perm, const uint8_t* dead, double damp_add,
                                double* A, cudaStream_t s) {
  if (k <= 0) return cudaErrorInvalidValue;
  build_damped_kernel<<<stride_grid(k * k, 256), 256, 0, s>>>(S, sa, sb, k, scale, perm, dead,
                                                              damp_add, A);
  return cudaGetLastError();
}

cudaError_t launch_split_factor(const double* U, int64_t k, float* uf, double* ud, cudaStream_t s) {
  if (k <= 0) return cudaErrorInvalidValue;
  split_factor_kernel<<<stride_grid(k * k, 256), 256, 0, s>>>(U, k, uf, ud);
  return cudaGetLastError();
}

cudaError_t launch_permute_transpose(const float* w, int64_t n, int64_t k, const int64_t* perm,
                                     const uint8_t* dead, float* wp, cudaStream_t s) {
  if (n <= 0 || k <= 0) return cudaErrorInvalidValue;
  permute_transpose_kernel<<<stride_grid(n * k, 256), 256, 0, s>>>(w, n, k, perm, dead, wp);
  return cudaGetLastError();
}

cudaError_t launch_gptq_block(float* wp, const double* ud, const float* uf, int64_t n, int64_t k,
                              int64_t i1, int64_t i2, int64_t group_size, bool sym,
                              const int64_t* perm, uint8_t* codes, uint16_t* scales, uint8_t* zeros,
                              float* err, cudaStream_t s) {
  if (n <= 0 || k <= 0 || i1 < 0 || i2 <= i1 || i2 > k || i2 - i1 > kMaxGptqBlock ||
      group_size <= 0 || k % group_size != 0)
    return cudaErrorInvalidValue;
  const int64_t grid = (n + kSolveThreads - 1) / kSolveThreads;
  if (grid > 0x7fffffff) return cudaErrorInvalidValue;
  gptq_block_kernel<<<unsigned(grid), kSolveThreads, 0, s>>>(wp, ud, uf, n, k, i1, i2, group_size,
                                                             sym, perm, codes, scales, zeros, err);
  return cudaGetLastError();
}

cudaError_t launch_gptq_lazy_update(float* wp, const float* uf, const float* err, int64_t n,
                                    int64_t k, int64_t i1, int64_t i2, cudaStream_t s) {
  if (i2 >= k) return cudaSuccess;  // nothing after the last block
  if (n <= 0 || i1 < 0 || i2 <= i1 || i2 - i1 > kMaxGptqBlock) return cudaErrorInvalidValue;
  const int64_t gx = (n + kLazyTile - 1) / kLazyTile, gy = (k - i2 + kLazyTile - 1) / kLazyTile;
  if (gx > 0x7fffffff || gy > 65535) return cudaErrorInvalidValue;
  gptq_lazy_kernel<<<dim3(unsigned(gx), unsigned(gy)), kLazyThreads, 0, s>>>(wp, uf, err, n, k, i1,
                                                                             i2);
  return cudaGetLastError();
}

cudaError_t launch_dequantize(const uint8_t* codes, const uint16_t* scales, const uint8_t* zeros,
                              const int32_t* g_idx, int64_t n, int64_t k, float* w,
                              cudaStream_t s) {
  if (n <= 0 || k <= 0) return cudaErrorInvalidValue;
  dequantize_kernel<<<stride_grid(n * k, 256), 256, 0, s>>>(codes, scales, zeros, g_idx, n, k, w);
  return cudaGetLastError();
}

}  // namespace qw::gptq::gpu

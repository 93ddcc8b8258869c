#include "gpu/device_ceilings.h"

#include <cublas_v2.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "core/half.h"
#include "gpu/cuda_util.h"

namespace qw::gpu {
namespace {

#define QW_CUBLAS_C(expr)                                                                              \
  do {                                                                                                 \
    cublasStatus_t _s = (expr);                                                                        \
    if (_s != CUBLAS_STATUS_SUCCESS) return Errorf("cuBLAS error %d (%s) in %s", int(_s), cublasGetStatusString(_s), #expr); \
  } while (0)

struct Handle {
  cublasHandle_t h = nullptr;
  ~Handle() {
    if (h) cublasDestroy(h);
  }
};

// n random 16-bit values in [-1, 1): 1 Mi distinct values tiled (the pattern does not
// matter to the tensor cores; zeros would).
Status fill_random16(void* dst, size_t n, bool bf16, uint64_t seed) {
  const size_t kDistinct = size_t(1) << 20;
  std::vector<uint16_t> tile(std::min(n, kDistinct));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  for (auto& v : tile) v = bf16 ? f32_to_bf16(d(rng)) : f32_to_f16(d(rng));
  for (size_t o = 0; o < n; o += tile.size()) {
    const size_t c = std::min(tile.size(), n - o);
    QW_CUDA(cudaMemcpy(static_cast<uint16_t*>(dst) + o, tile.data(), c * 2, cudaMemcpyHostToDevice));
  }
  return Status::Ok();
}

template <typename F>
Expected<double> median_ms(cudaStream_t s, int warm, int reps, F&& f) {
  QW_ASSIGN_OR_RETURN(Event e0, Event::create(true));
  QW_ASSIGN_OR_RETURN(Event e1, Event::create(true));
  std::vector<double> ms;
  for (int i = 0; i < warm + reps; ++i) {
    QW_CUDA(cudaEventRecord(e0.get(), s));
    QW_RETURN_IF_ERROR(f());
    QW_CUDA(cudaEventRecord(e1.get(), s));
    QW_CUDA(cudaEventSynchronize(e1.get()));
    float t = 0;
    QW_CUDA(cudaEventElapsedTime(&t, e0.get(), e1.get()));
    if (i >= warm) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

Expected<DeviceCeilings> measure_device_ceilings(int device, bool bf16, int64_t shape_m, int64_t shape_n,
                                                 int64_t shape_k) {
  DeviceCeilings c;
  QW_CUDA(cudaSetDevice(device));
  cudaDeviceProp prop{};
  QW_CUDA(cudaGetDeviceProperties(&prop, device));
  c.device = prop.name;
  QW_ASSIGN_OR_RETURN(Stream st, Stream::create());
  cudaStream_t s = st.get();

  // Copy bandwidth: 2 GiB D2D (far past the L2).
  {
    const size_t bytes = size_t(2) << 30;
    QW_ASSIGN_OR_RETURN(DeviceBuffer a, DeviceBuffer::alloc(bytes, "the copy-bandwidth source"));
    QW_ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::alloc(bytes, "the copy-bandwidth destination"));
    QW_CUDA(cudaMemsetAsync(a.get(), 0x5a, bytes, s));
    QW_ASSIGN_OR_RETURN(double ms, median_ms(s, 2, 10, [&]() -> Status {
                          QW_CUDA(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, s));
                          return Status::Ok();
                        }));
    c.d2d_bytes = bytes;
    c.d2d_gbps = 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
  }

  Handle h;
  QW_CUBLAS_C(cublasCreate(&h.h));
  QW_CUBLAS_C(cublasSetStream(h.h, s));
  const cudaDataType_t t16 = bf16 ? CUDA_R_16BF : CUDA_R_16F;
  const float alpha = 1.f, beta = 0.f;
  {
    const int n = 8192;
    const size_t el = size_t(n) * n;
    QW_ASSIGN_OR_RETURN(DeviceBuffer a, DeviceBuffer::alloc(el * 2, "the GEMM-rate A"));
    QW_ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::alloc(el * 2, "the GEMM-rate B"));
    QW_ASSIGN_OR_RETURN(DeviceBuffer o, DeviceBuffer::alloc(el * 2, "the GEMM-rate C"));
    QW_RETURN_IF_ERROR(fill_random16(a.get(), el, bf16, 1));
    QW_RETURN_IF_ERROR(fill_random16(b.get(), el, bf16, 2));
    QW_ASSIGN_OR_RETURN(double ms, median_ms(s, 3, 10, [&]() -> Status {
                          QW_CUBLAS_C(cublasGemmEx(h.h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &alpha, a.get(), t16, n,
                                                   b.get(), t16, n, &beta, o.get(), t16, n, CUBLAS_COMPUTE_32F,
                                                   CUBLAS_GEMM_DEFAULT));
                          return Status::Ok();
                        }));
    c.gemm_tflops = 2.0 * double(n) * n * n / (ms * 1e-3) / 1e12;
  }
  if (shape_m > 0 && shape_n > 0 && shape_k > 0) {
    const int M = int(shape_m), N = int(shape_n), K = int(shape_k);
    QW_ASSIGN_OR_RETURN(DeviceBuffer a, DeviceBuffer::alloc(size_t(M) * K * 2, "the GEMM-shape A"));
    QW_ASSIGN_OR_RETURN(DeviceBuffer w, DeviceBuffer::alloc(size_t(N) * K * 2, "the GEMM-shape W"));
    QW_ASSIGN_OR_RETURN(DeviceBuffer o, DeviceBuffer::alloc(size_t(M) * N * 4, "the GEMM-shape C"));
    QW_RETURN_IF_ERROR(fill_random16(a.get(), size_t(M) * K, bf16, 3));
    QW_RETURN_IF_ERROR(fill_random16(w.get(), size_t(N) * K, bf16, 4));
    QW_ASSIGN_OR_RETURN(double ms, median_ms(s, 3, 10, [&]() -> Status {
                          QW_CUBLAS_C(cublasGemmEx(h.h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w.get(), t16, K,
                                                   a.get(), t16, K, &beta, o.get(), CUDA_R_32F, N,
                                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
                          return Status::Ok();
                        }));
    c.shape_m = M, c.shape_n = N, c.shape_k = K;
    c.shape_tflops = 2.0 * double(M) * N * K / (ms * 1e-3) / 1e12;
  }
  QW_CUDA(cudaStreamSynchronize(s));
  return c;
}

}  // namespace qw::gpu

// The CUDA resources GPTQ on the GPU works with: cuBLAS and cuSOLVER loaded with dlopen
// (so qwc starts, and quantizes on the CPU, on machines without the CUDA toolkit), their
// handles as RAII owners bound to one stream, and checked calls whose errors name the
// operation. cudart itself is linked statically (its RAII owners are runtime/gpu/cuda_util.h).
#pragma once
#include <cublas_v2.h>
#include <cusolverDn.h>

#include <string>

#include "core/status.h"
#include "gpu/cuda_util.h"

namespace qw::gptq::gpu {

using qw::gpu::DeviceBuffer;

// The few entry points GPTQ needs. The pointer types come from the headers (decltype does
// not reference the symbols, so nothing links against the libraries).
struct CudaMathApi {
  decltype(&cublasCreate_v2) cublas_create = nullptr;
  decltype(&cublasDestroy_v2) cublas_destroy = nullptr;
  decltype(&cublasSetStream_v2) cublas_set_stream = nullptr;
  decltype(&cublasSetMathMode) cublas_set_math_mode = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  decltype(&cublasDsyrk_v2) dsyrk = nullptr;
  decltype(&cublasDgemm_v2) dgemm = nullptr;  // --quality-report's held-out errors
  decltype(&cusolverDnCreate) solver_create = nullptr;
  decltype(&cusolverDnDestroy) solver_destroy = nullptr;
  decltype(&cusolverDnSetStream) solver_set_stream = nullptr;
  decltype(&cusolverDnDpotrf_bufferSize) potrf_buffer_size = nullptr;
  decltype(&cusolverDnDpotrf) potrf = nullptr;
  decltype(&cusolverDnDpotri_bufferSize) potri_buffer_size = nullptr;
  decltype(&cusolverDnDpotri) potri = nullptr;
  std::string cublas_path, cusolver_path;  // what was loaded, for messages
};

// Loads both libraries once (thread-safe); the error says which one is missing and where it
// was looked for.
Expected<const CudaMathApi*> load_cuda_math();

Status cublas_error(cublasStatus_t s, const std::string& what);
Status cusolver_error(cusolverStatus_t s, const std::string& what);
inline Status check_cuda(cudaError_t e, const std::string& what) {
  if (e == cudaSuccess) return Status::Ok();
  (void)cudaGetLastError();  // clear a sticky launch error so the next message is accurate
  return Status::Error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" +
                       cudaGetErrorString(e) + ") in " + what);
}
inline Status check_cublas(cublasStatus_t s, const std::string& what) {
  return s == CUBLAS_STATUS_SUCCESS ? Status::Ok() : cublas_error(s, what);
}
inline Status check_cusolver(cusolverStatus_t s, const std::string& what) {
  return s == CUSOLVER_STATUS_SUCCESS ? Status::Ok() : cusolver_error(s, what);
}

// One stream with a cuBLAS and a cuSOLVER handle on it. cuBLAS runs in plain fp32/fp64
// (CUBLAS_DEFAULT_MATH: no TF32), so the forward stays close to the CPU reference.
class GpuContext {
 public:
  static Expected<GpuContext> create();
  GpuContext() = default;
  ~GpuContext();
  GpuContext(const GpuContext&) = delete;
  GpuContext& operator=(const GpuContext&) = delete;
  GpuContext(GpuContext&& o) noexcept;
  GpuContext& operator=(GpuContext&& o) noexcept;

  const CudaMathApi& api() const { return *api_; }
  cudaStream_t stream() const { return stream_.get(); }
  cublasHandle_t cublas() const { return cublas_; }
  cusolverDnHandle_t solver() const { return solver_; }
  // Waits for the stream; the error names `what`.
  Status sync(const std::string& what) const;

 private:
  void release();
  const CudaMathApi* api_ = nullptr;
  qw::gpu::Stream stream_;
  cublasHandle_t cublas_ = nullptr;
  cusolverDnHandle_t solver_ = nullptr;
};

// Typed device allocation: `count` elements of T, the message naming `what`.
template <typename T>
Expected<DeviceBuffer> device_array(size_t count, const std::string& what) {
  return DeviceBuffer::alloc(std::max<size_t>(1, count) * sizeof(T), what);
}

Status upload(DeviceBuffer& dst, const void* src, size_t bytes, cudaStream_t s,
              const std::string& what);
Status download(void* dst, const DeviceBuffer& src, size_t bytes, cudaStream_t s,
                const std::string& what);

}  // namespace qw::gptq::gpu

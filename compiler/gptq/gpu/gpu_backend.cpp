#include "compiler/gptq/gpu/gpu_backend.h"

#include <cuda_runtime.h>

#include "compiler/gptq/gpu/calib_forward.h"
#include "compiler/gptq/gpu/cuda_libs.h"

namespace qw::gptq::gpu {

GpuProbe probe_gpu() {
  GpuProbe p;
  int n = 0;
  // cudart is linked statically: without a driver this returns an error, it does not abort.
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    p.reason = std::string("no usable CUDA driver or device (") + cudaGetErrorName(e) + ")";
    return p;
  }
  if (n <= 0) {
    p.reason = "no CUDA device found";
    return p;
  }
  auto api = load_cuda_math();
  if (!api.ok()) {
    p.reason = api.status().message();
    return p;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
    p.name = prop.name;
  } else {
    (void)cudaGetLastError();
    p.name = "CUDA device 0";
  }
  p.devices = n;
  return p;
}

const GpuGptqBackend& gpu_gptq_backend() {
  static const GpuGptqBackend backend{probe_gpu, quantize_model_gpu};
  return backend;
}

}  // namespace qw::gptq::gpu

// The two ceilings a GPU figure is judged against, measured in the same process:
// device-to-device copy bandwidth (bytes read + written per second) and the dense 16-bit
// tensor-core rate of cuBLAS (8192^3, fp32 accumulate), plus cuBLAS at one model shape.
#pragma once
#include <cstdint>
#include <string>

#include "core/status.h"

namespace qw::gpu {

struct DeviceCeilings {
  std::string device;
  double d2d_gbps = 0;       // 2 * bytes / time of cudaMemcpy D2D (median)
  uint64_t d2d_bytes = 0;    // bytes copied per timed copy
  double gemm_tflops = 0;    // 8192^3, fp16 in/out, fp32 accumulate (median)
  double shape_tflops = 0;   // rows x n x k, fp16 in, fp32 out (as the prefill GEMMs run)
  int64_t shape_m = 0, shape_n = 0, shape_k = 0;
};

// Random 16-bit inputs (fp16, or bf16 when bf16 is true); medians of 10 timed runs after
// warm-up. shape_* <= 0 skips the model-shaped GEMM.
Expected<DeviceCeilings> measure_device_ceilings(int device, bool bf16, int64_t shape_m, int64_t shape_n,
                                                 int64_t shape_k);

}  // namespace qw::gpu

// The GPU GPTQ backend qwc hands to compile_checkpoint (gptq_device.h): a probe that fails
// gracefully without a driver, device or CUDA math libraries, and quantize_model_gpu.
#pragma once
#include "compiler/gptq/gptq_device.h"

namespace qw::gptq::gpu {

GpuProbe probe_gpu();
const GpuGptqBackend& gpu_gptq_backend();

}  // namespace qw::gptq::gpu

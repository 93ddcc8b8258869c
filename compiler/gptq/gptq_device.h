// Where GPTQ quantization runs (qwc compile --gptq-device auto|cpu|gpu). qw_compiler never
// links CUDA: the GPU implementation (compiler/gptq/gpu, built with QW_CUDA) is handed in by
// qwc as a GpuGptqBackend, so the CPU-only build (and machines without a GPU or driver)
// keep the CPU path.
#pragma once
#include <functional>
#include <string>

#include "compiler/gptq/model_quantizer.h"
#include "compiler/gptq/quant_config.h"
#include "compiler/safetensors_reader.h"
#include "core/model_config.h"
#include "core/status.h"

namespace qw::gptq {

enum class GptqDevice { kAuto, kCpu, kGpu };

// "auto" | "cpu" | "gpu"; anything else is refused naming the flag.
Expected<GptqDevice> parse_gptq_device(const std::string& s);
const char* gptq_device_name(GptqDevice d);

// What the GPU backend found on this machine. Probing never fails hard: without a driver,
// a device or the CUDA math libraries, `devices` is 0 and `reason` says why.
struct GpuProbe {
  int devices = 0;
  std::string name;    // device 0, when there is one
  std::string reason;  // when devices == 0
};

struct GpuGptqBackend {
  std::function<GpuProbe()> probe;
  // Same contract and output as quantize_model (GPTQ only; RTN stays on the CPU).
  std::function<Expected<GptqConfig>(const ModelConfig&, const Checkpoint&,
                                     const ModelQuantizeOptions&)>
      quantize_model;
};

struct GptqDeviceChoice {
  GptqDevice device = GptqDevice::kCpu;  // kCpu or kGpu, never kAuto
  std::string description;               // for the "GPTQ on ..." line
};

// auto: the GPU when a backend is present and probes a device, else the CPU. gpu: an error
// (one line, saying why) when there is no usable GPU. cpu: the CPU. `threads` is only for
// the CPU's description.
Expected<GptqDeviceChoice> resolve_gptq_device(GptqDevice requested, const GpuGptqBackend* backend,
                                               unsigned threads);

}  // namespace qw::gptq

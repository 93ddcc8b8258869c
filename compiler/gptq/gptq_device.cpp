#include "compiler/gptq/gptq_device.h"

namespace qw::gptq {

Expected<GptqDevice> parse_gptq_device(const std::string& s) {
  if (s == "auto") return GptqDevice::kAuto;
  if (s == "cpu") return GptqDevice::kCpu;
  if (s == "gpu") return GptqDevice::kGpu;
  return Status::Error("--gptq-device must be auto, cpu or gpu (got '" + s + "')");
}

const char* gptq_device_name(GptqDevice d) {
  switch (d) {
    case GptqDevice::kAuto:
      return "auto";
    case GptqDevice::kCpu:
      return "cpu";
    case GptqDevice::kGpu:
      return "gpu";
  }
  return "?";
}

Expected<GptqDeviceChoice> resolve_gptq_device(GptqDevice requested, const GpuGptqBackend* backend,
                                               unsigned threads) {
  const GptqDeviceChoice cpu{GptqDevice::kCpu, "the CPU (" + std::to_string(threads) + " threads)"};
  if (requested == GptqDevice::kCpu) return cpu;
  std::string why;
  if (!backend || !backend->probe || !backend->quantize_model) {
    why = "this qwc was built without CUDA";
  } else {
    const GpuProbe p = backend->probe();
    if (p.devices > 0) return GptqDeviceChoice{GptqDevice::kGpu, "the GPU (" + p.name + ")"};
    why = p.reason.empty() ? "no CUDA device found" : p.reason;
  }
  if (requested == GptqDevice::kGpu) return Status::Error("--gptq-device gpu: " + why);
  return GptqDeviceChoice{GptqDevice::kCpu, cpu.description + "; no GPU: " + why};
}

}  // namespace qw::gptq

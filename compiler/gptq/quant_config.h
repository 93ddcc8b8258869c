// GPTQ quantization settings of a checkpoint: quantize_config.json (AutoGPTQ) or the
// "quantization_config" object of config.json (transformers / GPTQModel). Only what the
// artifact can carry is accepted; anything else is refused naming the field.
#pragma once
#include <optional>
#include <string>

#include "core/status.h"

namespace qw::gptq {

// GPTQ checkpoints store zero points in one of two conventions. AutoGPTQ's original
// ("gptq", v1) packs zero - 1 and every kernel adds the 1 back; GPTQModel's "gptq_v2" packs
// the zero itself.
enum class CheckpointFormat { kGptqV1, kGptqV2 };

struct GptqConfig {
  int bits = 4;
  int group_size = 128;  // -1: one group spanning all input features
  bool sym = true;
  bool desc_act = false;
  CheckpointFormat format = CheckpointFormat::kGptqV1;
  std::string source;  // the file the settings came from, for messages
};

// Reads the settings from `dir`; nullopt when the checkpoint is not quantized.
Expected<std::optional<GptqConfig>> read_gptq_config(const std::string& dir);

// Validates a parsed JSON object (exposed for tests); `where` names the file.
Expected<GptqConfig> parse_gptq_config(const std::string& json_text, const std::string& where);

}  // namespace qw::gptq

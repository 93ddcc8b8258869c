// Writes random-weight Qwen2 checkpoints in exact HuggingFace layout (config.json,
// generation_config.json, bf16 safetensors shards + index, tokenizer files), deterministic
// per seed, so tests and benchmarks have real-shaped models without downloading any.
#pragma once
#include <string>

#include "core/model_config.h"
#include "core/status.h"

namespace qw {

struct TestModelOptions {
  std::string preset = "tiny";  // tiny | 0.5b | 7b
  uint64_t seed = 1;
  std::string output_dir;
  std::string tokenizer_dir;    // holds tokenizer.json, tokenizer_config.json, the chat template
  bool tie_embeddings_override = false;
  bool tie_embeddings = false;
  std::string rope_scaling_json;  // optional JSON object written as config.json "rope_scaling"
  int64_t layers = 0;             // > 0: override the preset's layer count (kernel profiling)
  uint64_t max_shard_bytes = 0;   // 0 = preset default
};

Expected<ModelConfig> test_model_preset(const std::string& preset);
Status write_test_model(const TestModelOptions& opts);

}  // namespace qw

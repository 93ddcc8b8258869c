// config.json / generation_config.json of a Qwen2 checkpoint -> validated ModelConfig.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "core/model_config.h"
#include "core/status.h"

namespace qw {

// `where` names the file in messages. Unknown architectures are refused by name.
Expected<ModelConfig> parse_hf_config(const nlohmann::json& j, const std::string& where);
Expected<ModelConfig> read_hf_config(const std::string& checkpoint_dir);
// Missing generation_config.json gives defaults taken from the model config.
Expected<GenerationDefaults> read_generation_config(const std::string& checkpoint_dir,
                                                    const ModelConfig& config);
Expected<nlohmann::json> read_json_file(const std::string& path);

}  // namespace qw

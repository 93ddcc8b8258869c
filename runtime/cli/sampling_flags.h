// Sampling flags shared by generate and chat; unset flags keep generation_config defaults.
#pragma once
#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/model_loader.h"
#include "engine/generator.h"

namespace qw::cli {

struct SamplingFlags {
  std::optional<double> temperature, top_p, repetition_penalty;
  std::optional<int64_t> top_k;
  std::optional<uint64_t> seed;
  int64_t max_tokens = 256;
  std::vector<std::string> stop;
  std::string system;
  LoadOptions load;

  void add_to(CLI::App* c);
  // Request template: sampling from the artifact's defaults overridden by flags, eos ids.
  GenerateRequest request_for(const LoadedModel& m) const;
};

}  // namespace qw::cli

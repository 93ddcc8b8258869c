// Backend-independent timing of a ModelExecutor: time to first token (one prefill step)
// at given prompt lengths, and steady decode throughput at given batch sizes.
#pragma once
#include <nlohmann/json.hpp>
#include <vector>

#include "core/status.h"
#include "engine/executor.h"

namespace qw {

struct ThroughputBenchOptions {
  std::vector<int64_t> prompt_lengths = {128, 2048};
  std::vector<int64_t> batch_sizes = {1, 8, 32};
  int64_t decode_context = 128;  // prompt length before the decode steps
  int64_t decode_steps = 64;
  int repeats = 5;
  uint64_t seed = 42;
};

// Random token ids (seeded): real data, never zeros. Medians of repeated runs.
Expected<nlohmann::ordered_json> run_throughput_bench(ModelExecutor& model,
                                                      const ThroughputBenchOptions& opts);

}  // namespace qw

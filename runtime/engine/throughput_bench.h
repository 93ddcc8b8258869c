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
  // TTFT when this fraction of the longest prompt is a prefix an earlier prompt left in the
  // KV cache (a shared system prompt, a chat's earlier turns): prefix caching at work.
  std::vector<double> prefix_reuse_fractions = {0.5, 0.9};
  int64_t decode_context = 128;  // prompt length before the decode steps
  int64_t decode_steps = 64;
  int repeats = 5;
  uint64_t seed = 42;
};

// Random token ids (seeded): real data, never zeros. Medians of repeated runs.
Expected<nlohmann::ordered_json> run_throughput_bench(ModelExecutor& model,
                                                      const ThroughputBenchOptions& opts);

// Bytes one decode step must read at least: every weight once (one embedding row per
// sequence; the embedding table again as lm_head when tied) plus each sequence's K and V of
// keys [0, context] in every layer. elem_bytes: bytes per weight / cache element.
// stored_weight_bytes > 0: the weights as the artifact stores them (INT4 matrices at their
// packed size, scales included), embedding table excluded unless tied; used instead of
// counting elem_bytes per weight.
double decode_step_bytes(const ModelConfig& c, double elem_bytes, int64_t batch, double context,
                         double stored_weight_bytes = 0);
// Matrix FLOPs of a prefill of n tokens from an empty cache (causal attention counted as
// n(n+1)/2 score/value pairs; lm_head for the last position only).
double prefill_flops(const ModelConfig& c, int64_t n);
// Adds "floors" to a run_throughput_bench result: per decode batch the floor (bytes /
// copy bandwidth) and floor/measured; per prompt length the prefill floor (FLOPs / dense
// GEMM rate) and achieved/rate. copy_gbps counts bytes read + written, as a D2D copy does.
void add_throughput_floors(nlohmann::ordered_json& result, const ModelConfig& c, double elem_bytes,
                           const ThroughputBenchOptions& opts, double copy_gbps, double gemm_tflops,
                           double stored_weight_bytes = 0);

}  // namespace qw

// Sampling on the device, host half: a logits row reduced to the few candidates a Sampler
// can still pick, so that a backend sends k (id, value) pairs per sequence instead of a
// vocabulary row (600 KB) and the host samples from those.
//
// The reduction applies the steps of Sampler that need the whole row: penalties, the
// temperature, and the top-k cut (every value >= the k-th largest, ties included), and it
// reports the log-sum-exp of the processed row (for logprobs). Sampler::sample_candidates
// then draws exactly the token Sampler::sample would draw from the full row: same values,
// same order of operations (tests/cpu/test_cpu_sampler.cpp). reduce_row_to_candidates is
// the host reference a device kernel is checked against (tests/gpu).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace qw {

// Candidates per row a backend returns at most; requests with a larger k (or with ties
// that overflow it) fall back to the full row.
inline constexpr int32_t kMaxCandidates = 64;

// One token of a row whose logit the penalties change. The processed value of entry e is
//   v = raw[e.id];  if (e.repeat) v = v < 0 ? v * rep : v / rep;  v -= e.delta;  v /= temp
// each step rounded to float as written (no fused multiply-add), as Sampler applies them.
struct LogitPenalty {
  int32_t id = 0;
  int32_t repeat = 0;  // in the context: the repetition penalty applies
  float delta = 0.f;   // presence + frequency * count (generated tokens only)
};

struct CandidateRequest {
  int32_t k = 0;            // 0: the caller needs the whole row
  float temperature = 1.f;  // 1 for greedy rows (no division)
  float repetition_penalty = 1.f;
  std::span<const LogitPenalty> penalties;  // distinct ids
};

struct RowCandidates {
  // Processed values >= the k-th largest, best first (lower id first among equals).
  std::vector<int32_t> ids;
  std::vector<float> values;
  double logsumexp = 0.0;  // of the whole processed row
  bool complete = false;   // false: more ties than kMaxCandidates, or not reduced
};

// The host reference: what a backend's reduction must return for `row`.
void reduce_row_to_candidates(std::span<const float> row, const CandidateRequest& req,
                              RowCandidates& out);

}  // namespace qw

// Next-token selection with the semantics of HF `generate` (and vLLM where HF has no
// counterpart). Order, as HF applies its logits processors and warpers:
//   1. repetition penalty (HF): for each distinct token of prompt + generated text,
//      logit > 0 ? logit / p : logit * p
//   2. presence / frequency penalties (OpenAI, vLLM): over generated tokens only,
//      logit -= frequency * count + presence * (count > 0)
//   3. temperature == 0: greedy argmax (lowest id on ties), stop here
//   4. logit /= temperature
//   5. top-k: drop logits below the k-th largest (ties with it are kept, as torch.topk + <)
//   6. top-p: drop the least likely tokens whose cumulative probability (ascending) is
//      <= 1 - top_p, always keeping the most likely one
//   7. draw from softmax of what is left with a seeded std::mt19937_64 (reproducible).
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "core/model_config.h"
#include "core/status.h"
#include "engine/candidates.h"

namespace qw {

struct SamplingParams {
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // <= 0: off
  double top_p = 1.0;        // >= 1: off
  double repetition_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  uint64_t seed = 0;
  // Log-probabilities to report: < 0 none; 0 only the chosen token's; N > 0 also the N
  // most likely. They are the log-softmax of the logits after steps 1-4 (penalties and
  // temperature; temperature 0 counts as 1), before top-k/top-p truncation, as vLLM's
  // "processed_logprobs".
  int logprobs = -1;

  // Defaults from generation_config.json (do_sample false means greedy).
  static SamplingParams from_defaults(const GenerationDefaults& g);
  Status validate() const;
};

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token = 0;
  float logprob = 0.0f;           // when params.logprobs >= 0
  std::vector<TokenLogprob> top;  // params.logprobs most likely, best first
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  const SamplingParams& params() const { return params_; }
  // logits: one vocabulary row. context: prompt + generated tokens (repetition penalty);
  // generated: the generated suffix of it (presence/frequency penalties).
  SampleResult sample(std::span<const float> logits, std::span<const int32_t> context,
                      std::span<const int32_t> generated);

  // What a backend must reduce this sequence's next row to (engine/candidates.h), or k 0
  // when these parameters need the whole row (top-k off or above kMaxCandidates while
  // sampling). `storage` backs the returned penalties.
  CandidateRequest candidate_request(std::span<const int32_t> context,
                                     std::span<const int32_t> generated,
                                     std::vector<LogitPenalty>& storage) const;
  // The token sample() would draw from the full row, from its complete reduction (the
  // random stream advances the same way).
  SampleResult sample_candidates(const RowCandidates& c);

  // The processed logits (steps 1-6, -inf where masked) of the last sample() call;
  // exposed for tests.
  const std::vector<float>& last_processed() const { return work_; }

 private:
  void apply_penalties(std::span<const int32_t> context, std::span<const int32_t> generated);
  void select_top_k();
  // On cand_ / cval_ (ascending ids): drops the top-p tail; returns how many stayed.
  void select_top_p();
  int32_t draw();
  void fill_logprobs(SampleResult& out) const;

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
  std::vector<float> logprob_base_;  // logits after steps 1-4, for logprobs
  std::vector<int32_t> cand_;   // ids still in play after top-k / top-p, ascending
  std::vector<float> cval_;     // their processed logits
  std::vector<double> prob_;    // unnormalised probabilities of cand_
  std::vector<float> heap_;     // top-k selection
  std::vector<int32_t> order_;  // top-p: the bucket around the cut
  std::vector<double> bucket_mass_;  // top-p: probability mass per logit bucket
  std::vector<char> keep_in_cut_;    // top-p: survivors of the cut bucket
};

}  // namespace qw

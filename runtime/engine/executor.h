// The contract between a model backend (CPU reference, GPU) and everything above it
// (generation loop, scheduler, server). A backend owns its weights and its KV cache;
// callers speak in sequence ids and token chunks.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/model_config.h"
#include "core/status.h"
#include "engine/candidates.h"

namespace qw {

using SeqId = uint64_t;

// One sequence's work in a step: append `tokens` at positions [start_pos, start_pos+n).
// start_pos must equal the number of tokens already cached for seq (chunked prefill and
// decode are the same operation; decode is n == 1).
struct StepInput {
  SeqId seq = 0;
  std::span<const int32_t> tokens;
  int64_t start_pos = 0;
  bool want_logits = true;  // logits of the chunk's last token
  bool all_logits = false;  // logits for every token of the chunk (teacher-forced checks)
};

// The logits rows of a step_reduced(): row i either reduced (candidates[i].complete) or
// whole at rows[row_index[i] * vocab_size ...].
struct StepRows {
  std::vector<RowCandidates> candidates;
  std::vector<int64_t> row_index;  // -1 where reduced
  std::span<const float> rows;
};

struct KvUsage {
  int64_t blocks_total = 0;
  int64_t blocks_used = 0;    // held by sequences
  int64_t blocks_cached = 0;  // held by nobody, kept for prefix reuse (reclaimable)
  int64_t block_tokens = 0;
};

class ModelExecutor {
 public:
  virtual ~ModelExecutor() = default;
  virtual const ModelConfig& config() const = 0;
  virtual std::string device_name() const = 0;
  // Runs one step over several sequences. `logits` receives, in input order, vocab_size
  // floats per requested position (one per StepInput with want_logits, or n per input
  // with all_logits). Fails (naming the sequence) if the KV cache cannot hold the tokens.
  virtual Status step(std::span<const StepInput> inputs, std::vector<float>& logits) = 0;
  // For a sequence with nothing cached yet: reuses the KV of the longest cached prefix of
  // `tokens` (prefix caching) and returns how many tokens are now cached; the caller starts
  // feeding from there. Always leaves at least one token to compute.
  virtual int64_t attach_prefix(SeqId seq, std::span<const int32_t> tokens) = 0;
  // step() whose logits stay in a buffer of the executor's, valid until its next call: a
  // backend that already holds them in host memory (the GPU's pinned staging buffer)
  // saves copying a vocabulary row per sequence (39 MB a step at batch 64).
  virtual Expected<std::span<const float>> step_view(std::span<const StepInput> inputs) {
    QW_RETURN_IF_ERROR(step(inputs, view_logits_));
    return std::span<const float>(view_logits_);
  }
  // step_view() with row i (in logits order, one request per row) reduced to its
  // candidates where requests[i].k > 0 and the backend can (sampling on the device: a few
  // hundred bytes per row cross to the host instead of the vocabulary). The others come
  // whole. `out` is reused between steps.
  virtual Status step_reduced(std::span<const StepInput> inputs,
                              std::span<const CandidateRequest> requests, StepRows& out);
  // Drops a sequence's KV cache (its blocks return to the pool at once).
  virtual void release(SeqId seq) = 0;
  // Whether n more tokens for seq fit in the KV cache now (reclaiming cached prefixes).
  virtual bool can_append(SeqId seq, int64_t n) const = 0;
  virtual KvUsage kv_usage() const = 0;
  virtual int64_t max_context() const = 0;

 protected:
  std::vector<float> view_logits_;  // step_view()'s buffer where the backend has none
  // step_reduced() reduces rows on the host with the reference (tests exercise the reduced
  // path on backends without a device reduction).
  bool reduce_rows_on_host_ = false;
};

}  // namespace qw

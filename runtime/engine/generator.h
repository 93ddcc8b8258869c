// One reply from any ModelExecutor: prefill the prompt (in chunks), then decode token by
// token with a Sampler until an eos id, the token budget, the context end, a stop
// string, or a cancel request. Text comes from a caller-supplied incremental decoder
// (qw::StreamDecoder::push fits), so this file does not depend on the tokenizer.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "engine/executor.h"
#include "engine/sampler.h"

namespace qw {

enum class FinishReason { Eos, Length, Stop, ContextFull, Cancelled };
std::string_view finish_reason_name(FinishReason r);

struct GenerateRequest {
  SeqId seq = 1;
  std::vector<int32_t> prompt;
  // Tokens of `prompt` already in the executor's KV cache for `seq` (a chat turn that
  // continues the previous one); only the rest is prefilled.
  int64_t cached_prefix = 0;
  // With cached_prefix 0: start from the longest prefix of `prompt` the executor's prefix
  // cache holds (earlier turns of a chat). Off for benchmarks, which time the prefill.
  bool reuse_cached_prefix = false;
  SamplingParams sampling;
  int64_t max_new_tokens = 256;
  std::vector<int64_t> eos_ids;   // stop tokens (not part of the text)
  std::vector<std::string> stop;  // stop strings, matched on decoded text
  int64_t prefill_chunk = 512;    // prompt tokens per step
  bool keep_cache = false;        // false: release seq's KV cache when done
};

struct TokenEvent {
  int32_t token = 0;  // -1: no new token, a final release of held-back text
  std::string_view text;  // newly releasable text (may be empty while a stop string could
                          // still match, or for tokens that end inside a UTF-8 character)
  const SampleResult* sample = nullptr;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (incl. the eos id if one ended the reply)
  std::string text;             // decoded text, cut before a matched stop string
  FinishReason finish = FinishReason::Length;
  std::vector<SampleResult> samples;  // per generated token, when sampling.logprobs >= 0
  // Tokens of prompt + reply now in the KV cache (with keep_cache): the next turn's
  // cached_prefix if its prompt extends this one.
  int64_t cached_tokens = 0;
  int64_t reused_prefix = 0;  // prompt tokens not prefilled (cached_prefix or prefix cache)
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
};

// Returns the text a new token adds (may be "" while bytes of a character are pending).
using TokenTextFn = std::function<std::string(int32_t)>;
using TokenCallback = std::function<void(const TokenEvent&)>;

// Fails (naming both numbers) when the prompt is longer than the model's
// max_position_embeddings or the executor's context, and on executor errors.
Expected<GenerateResult> generate(ModelExecutor& model, const GenerateRequest& req,
                                  const TokenTextFn& token_text,
                                  const TokenCallback& on_token = nullptr,
                                  const std::atomic<bool>* cancel = nullptr);

}  // namespace qw

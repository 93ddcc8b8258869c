// One request's sequence as the batching engine tracks it.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/executor.h"
#include "engine/generator.h"
#include "engine/sampler.h"
#include "engine/stop_matcher.h"
#include "structured/grammar.h"
#include "tokenizer/tokenizer.h"

namespace qw {

struct RequestParams {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int64_t max_new_tokens = 0;
  std::vector<int64_t> eos_ids;
  std::vector<std::string> stop;
  double timeout_seconds = 0;  // 0 = none
  // Constrained decoding (JSON mode, JSON Schema, forced tool calls); null = free text.
  std::shared_ptr<Grammar> grammar;
};

// What a request hears from the engine (on the engine thread; keep the sink cheap).
struct RequestEvent {
  std::string text;                   // newly released text
  std::vector<int32_t> tokens;        // tokens sampled in this event
  std::vector<SampleResult> samples;  // their logprobs, when requested
  bool finished = false;
  std::string finish_reason;  // "stop" | "length" | "cancelled" | "timeout" | "error"
  std::string error;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};
using RequestSink = std::function<void(RequestEvent&&)>;

struct Sequence {
  Sequence(SeqId id_, RequestParams p, RequestSink s, const Tokenizer& tok)
      : id(id_),
        params(std::move(p)),
        sink(std::move(s)),
        sampler(params.sampling),
        decoder(tok),
        stops(params.stop),
        tokens(params.prompt),
        arrival(std::chrono::steady_clock::now()) {
    if (params.grammar) matcher.emplace(params.grammar);
  }

  SeqId id;
  RequestParams params;
  RequestSink sink;
  Sampler sampler;
  std::vector<LogitPenalty> penalties;  // backs this step's CandidateRequest
  StreamDecoder decoder;
  StopMatcher stops;
  std::optional<GrammarMatcher> matcher;  // where the output is constrained
  std::vector<int32_t> tokens;  // prompt + generated; the KV cache holds the first `cached`
  int64_t cached = 0;
  int64_t preemptions = 0;
  std::chrono::steady_clock::time_point arrival;
  std::optional<std::chrono::steady_clock::time_point> first_token_at, last_token_at;
  std::atomic<bool> cancelled{false};

  int64_t prompt_len() const { return int64_t(params.prompt.size()); }
  int64_t generated() const { return int64_t(tokens.size()) - prompt_len(); }
  int64_t pending() const { return int64_t(tokens.size()) - cached; }  // tokens to feed
};

}  // namespace qw

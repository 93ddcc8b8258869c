#include "engine/generator.h"

#include "engine/stop_matcher.h"

#include <algorithm>
#include <chrono>

namespace qw {

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Eos:
      return "stop";
    case FinishReason::Length:
      return "length";
    case FinishReason::Stop:
      return "stop";
    case FinishReason::ContextFull:
      return "length";
    case FinishReason::Cancelled:
      return "cancelled";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

Expected<GenerateResult> generate(ModelExecutor& model, const GenerateRequest& req,
                                  const TokenTextFn& token_text, const TokenCallback& on_token,
                                  const std::atomic<bool>* cancel) {
  const ModelConfig& cfg = model.config();
  const int64_t n_prompt = int64_t(req.prompt.size());
  if (n_prompt == 0) return Status::Error("generate: empty prompt");
  if (n_prompt > cfg.max_position_embeddings)
    return Errorf("prompt of %lld tokens is longer than max_position_embeddings (%lld)",
                  (long long)n_prompt, (long long)cfg.max_position_embeddings);
  if (n_prompt > model.max_context())
    return Errorf("prompt of %lld tokens does not fit the %lld-token context of %s",
                  (long long)n_prompt, (long long)model.max_context(), model.device_name().c_str());
  if (req.cached_prefix < 0 || req.cached_prefix >= n_prompt)
    return Errorf("cached_prefix %lld must be below the prompt length %lld",
                  (long long)req.cached_prefix, (long long)n_prompt);
  QW_RETURN_IF_ERROR(req.sampling.validate());

  // Whatever happens below, a reply that does not keep its cache gives it back.
  struct Release {
    ModelExecutor& m;
    SeqId seq;
    bool keep;
    ~Release() {
      if (!keep) m.release(seq);
    }
  } release_guard{model, req.seq, req.keep_cache};

  GenerateResult res;
  std::vector<float> logits;
  const auto t0 = Clock::now();
  const int64_t chunk = std::max<int64_t>(1, req.prefill_chunk);
  int64_t first = req.cached_prefix;
  if (first == 0 && req.reuse_cached_prefix) first = model.attach_prefix(req.seq, req.prompt);
  res.reused_prefix = first;
  for (int64_t pos = first; pos < n_prompt; pos += chunk) {
    if (cancel && cancel->load()) {
      res.finish = FinishReason::Cancelled;
      res.cached_tokens = pos;
      return res;
    }
    const int64_t n = std::min(chunk, n_prompt - pos);
    StepInput in;
    in.seq = req.seq;
    in.tokens = std::span<const int32_t>(req.prompt.data() + pos, size_t(n));
    in.start_pos = pos;
    in.want_logits = pos + n == n_prompt;
    QW_RETURN_IF_ERROR(model.step(std::span<const StepInput>(&in, 1), logits));
  }
  res.prefill_seconds = seconds_since(t0);
  res.cached_tokens = n_prompt;

  const auto t1 = Clock::now();
  Sampler sampler(req.sampling);
  std::vector<int32_t> context(req.prompt);
  StopMatcher stops(req.stop);
  const size_t V = size_t(cfg.vocab_size);
  res.finish = FinishReason::Length;
  for (int64_t i = 0; i < req.max_new_tokens; ++i) {
    if (cancel && cancel->load()) {
      res.finish = FinishReason::Cancelled;
      break;
    }
    const std::span<const float> row(logits.data() + logits.size() - V, V);
    const std::span<const int32_t> generated(context.data() + n_prompt, size_t(i));
    SampleResult s = sampler.sample(row, context, generated);
    res.tokens.push_back(s.token);
    context.push_back(s.token);
    const bool eos =
        std::find(req.eos_ids.begin(), req.eos_ids.end(), int64_t(s.token)) != req.eos_ids.end();
    bool stopped = false;
    if (!eos) stopped = stops.push(token_text(s.token));
    if (on_token) {
      TokenEvent ev;
      ev.token = s.token;
      ev.text = stops.releasable(eos || stopped);
      ev.sample = &s;
      on_token(ev);
    }
    if (req.sampling.logprobs >= 0) res.samples.push_back(std::move(s));
    if (eos || stopped) {
      res.finish = eos ? FinishReason::Eos : FinishReason::Stop;
      break;
    }
    if (i + 1 == req.max_new_tokens) break;  // the last token need not be fed back
    if (!model.can_append(req.seq, 1)) {
      res.finish = FinishReason::ContextFull;
      break;
    }
    StepInput in;
    in.seq = req.seq;
    in.tokens = std::span<const int32_t>(&context.back(), 1);
    in.start_pos = res.cached_tokens;
    QW_RETURN_IF_ERROR(model.step(std::span<const StepInput>(&in, 1), logits));
    ++res.cached_tokens;
  }
  if (on_token && res.finish != FinishReason::Eos && res.finish != FinishReason::Stop) {
    // Release text held back for a stop string that never came.
    const std::string_view rest = stops.releasable(true);
    if (!rest.empty()) {
      TokenEvent ev;
      ev.token = -1;
      ev.text = rest;
      on_token(ev);
    }
  }
  res.text = stops.text();
  res.decode_seconds = seconds_since(t1);
  return res;
}

}  // namespace qw

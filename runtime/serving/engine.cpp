#include "serving/engine.h"

#include <algorithm>

#include "serving/constrained_sampling.h"

namespace qw {

namespace {
using Clock = std::chrono::steady_clock;
double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

Engine::Engine(ModelExecutor& model, const Tokenizer& tokenizer, EngineOptions opts,
               EngineObserver observer)
    : model_(model),
      tokenizer_(tokenizer),
      opts_(opts),
      observer_(std::move(observer)),
      scheduler_(opts.scheduler),
      sampling_pool_(opts.sampling_threads > 0
                         ? opts.sampling_threads
                         : int(std::clamp(std::thread::hardware_concurrency(), 1u, 8u))) {
  stats_.kv = model_.kv_usage();
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    accepting_ = false;
  }
  cv_.notify_all();
  thread_.join();
}

std::variant<SeqId, Engine::SubmitError> Engine::submit(RequestParams params, RequestSink sink) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!accepting_) return SubmitError::ShuttingDown;
  if (int64_t(inbox_.size()) + stats_.waiting >= opts_.max_waiting) return SubmitError::QueueFull;
  const SeqId id = next_id_++;
  auto seq = std::make_unique<Sequence>(id, std::move(params), std::move(sink), tokenizer_);
  live_[id] = seq.get();
  inbox_.push_back(std::move(seq));
  cv_.notify_all();
  return id;
}

void Engine::cancel(SeqId id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(id);
  if (it != live_.end()) it->second->cancelled = true;
  cv_.notify_all();
}

void Engine::cancel_all() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, s] : live_) s->cancelled = true;
  cv_.notify_all();
}

void Engine::stop_accepting() {
  std::lock_guard<std::mutex> lock(mu_);
  accepting_ = false;
}

bool Engine::idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_.empty();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats s = stats_;
  s.waiting += int64_t(inbox_.size());
  return s;
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stop_ || !inbox_.empty() || !running_.empty() || !waiting_.empty();
      });
      if (stop_ && inbox_.empty() && running_.empty() && waiting_.empty()) break;
      if (stop_)  // shutting down: cancel whatever is left
        for (auto& [id, s] : live_) s->cancelled = true;
      while (!inbox_.empty()) {
        waiting_.push_back(inbox_.front().get());
        owned_.push_back(std::move(inbox_.front()));
        inbox_.pop_front();
      }
    }
    run_step();
    std::lock_guard<std::mutex> lock(mu_);
    stats_.waiting = int64_t(waiting_.size());
    stats_.running = int64_t(running_.size());
    stats_.kv = model_.kv_usage();
  }
}

void Engine::finish(Sequence* s, const std::string& reason, const std::string& error) {
  RequestEvent ev;
  if (reason != "stop" && reason != "error") {
    // Bytes still held for an incomplete character or a stop-string prefix go out now.
    s->stops.push(s->decoder.flush());
    ev.text = std::string(s->stops.releasable(true));
  }
  ev.finished = true;
  ev.finish_reason = reason;
  ev.error = error;
  ev.prompt_tokens = s->prompt_len();
  ev.completion_tokens = s->generated();
  s->sink(std::move(ev));
  if (observer_.on_finish) observer_.on_finish(reason);
  model_.release(s->id);
  running_.erase(std::remove(running_.begin(), running_.end(), s), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), s), waiting_.end());
  std::lock_guard<std::mutex> lock(mu_);
  live_.erase(s->id);
  owned_.erase(std::remove_if(owned_.begin(), owned_.end(), [&](auto& p) { return p.get() == s; }),
               owned_.end());
}

void Engine::emit_token(Sequence* s, const SampleResult& r) {
  const auto now = Clock::now();
  if (!s->first_token_at) {
    s->first_token_at = now;
    if (observer_.on_first_token) observer_.on_first_token(secs(now - s->arrival));
    std::lock_guard<std::mutex> lock(mu_);
    stats_.prompt_tokens += uint64_t(s->prompt_len());
  } else if (observer_.on_inter_token) {
    observer_.on_inter_token(secs(now - *s->last_token_at));
  }
  s->last_token_at = now;
  s->tokens.push_back(r.token);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.generated_tokens;
  }
  const auto& eos = s->params.eos_ids;
  const bool is_eos = std::find(eos.begin(), eos.end(), int64_t(r.token)) != eos.end();
  bool stopped = false;
  if (!is_eos) stopped = s->stops.push(s->decoder.push(r.token));
  // A grammar whose text is complete (closing bracket or suffix written) ends the reply
  // without spending a step on eos.
  if (!is_eos && s->matcher && s->matcher->done()) stopped = true;
  RequestEvent ev;
  ev.tokens.push_back(r.token);
  if (s->params.sampling.logprobs >= 0) ev.samples.push_back(r);
  ev.text = std::string(s->stops.releasable(is_eos || stopped));
  const bool length = s->generated() >= s->params.max_new_tokens ||
                      int64_t(s->tokens.size()) >= model_.max_context();
  if (!ev.text.empty() || !ev.tokens.empty()) s->sink(std::move(ev));
  if (is_eos || stopped) finish(s, "stop");
  else if (length) finish(s, "length");
}

void Engine::run_step() {
  const auto now = Clock::now();
  // Cancellations and timeouts first, so their blocks are free for this step.
  std::vector<Sequence*> all(running_.begin(), running_.end());
  all.insert(all.end(), waiting_.begin(), waiting_.end());
  for (Sequence* s : all) {
    if (s->cancelled) finish(s, "cancelled");
    else if (s->params.timeout_seconds > 0 && secs(now - s->arrival) > s->params.timeout_seconds)
      finish(s, "timeout", "request timed out");
  }

  StepPlan plan = scheduler_.plan(running_, waiting_, model_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.preemptions += plan.preempted.size();
    for (const auto& a : plan.admitted)
      if (a.seq->preemptions == 0) {  // a recomputation is not a new prompt
        stats_.prefix_query_tokens += uint64_t(a.seq->prompt_len());
        stats_.prefix_hit_tokens += uint64_t(a.reused);
      }
  }
  if (plan.chunks.empty()) {
    if (running_.empty() && !waiting_.empty()) {
      Sequence* s = waiting_.front();
      const KvUsage kv = model_.kv_usage();
      finish(s, "error",
             "sequence of " + std::to_string(s->tokens.size()) +
                 " tokens does not fit the KV cache (" +
                 std::to_string(kv.blocks_total * kv.block_tokens) + " tokens)");
    }
    return;
  }
  std::vector<StepInput> inputs;
  inputs.reserve(plan.chunks.size());
  for (const auto& c : plan.chunks) {
    StepInput in;
    in.seq = c.seq->id;
    in.tokens = std::span<const int32_t>(c.seq->tokens.data() + c.seq->cached, size_t(c.n));
    in.start_pos = c.seq->cached;
    in.want_logits = c.seq->cached + c.n == int64_t(c.seq->tokens.size());
    inputs.push_back(in);
  }
  // Rows of logits per chunk, and what each row may be reduced to before it crosses to
  // the host (sampling on the device; grammar rows need the whole row for their mask).
  std::vector<int64_t> row_of(plan.chunks.size(), -1);
  std::vector<size_t> with_row;
  int64_t nrows = 0;
  for (size_t i = 0; i < plan.chunks.size(); ++i)
    if (inputs[i].want_logits) {
      row_of[i] = nrows++;
      with_row.push_back(i);
    }
  auto generated_of = [](const Sequence* s) {
    return std::span<const int32_t>(s->tokens.data() + s->prompt_len(), size_t(s->generated()));
  };
  requests_.assign(size_t(nrows), CandidateRequest{});
  sampling_pool_.parallel_for(int64_t(with_row.size()), 8, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      Sequence* s = plan.chunks[with_row[size_t(j)]].seq;
      if (!s->matcher)
        requests_[size_t(j)] = s->sampler.candidate_request(s->tokens, generated_of(s), s->penalties);
    }
  });
  const Status stepped = model_.step_reduced(inputs, requests_, step_rows_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.steps;
    if (stepped.ok()) {
      stats_.rows_sampled += uint64_t(nrows);
      for (int64_t r : step_rows_.row_index) stats_.rows_sampled_reduced += r < 0;
    }
  }
  if (!stepped.ok()) {
    for (const auto& c : plan.chunks) finish(c.seq, "error", stepped.message());
    return;
  }
  const size_t V = size_t(model_.config().vocab_size);
  auto row_logits = [&](int64_t row) {
    return step_rows_.rows.subspan(size_t(step_rows_.row_index[size_t(row)]) * V, V);
  };
  // Unconstrained sequences are sampled in parallel (each owns its Sampler), then tokens
  // are emitted on this thread in plan order.
  std::vector<size_t> free_text;
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    plan.chunks[i].seq->cached += plan.chunks[i].n;
    if (row_of[i] >= 0 && !plan.chunks[i].seq->matcher) free_text.push_back(i);
  }
  sampled_.resize(plan.chunks.size());
  sampling_pool_.parallel_for(int64_t(free_text.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const size_t i = free_text[size_t(j)];
      Sequence* s = plan.chunks[i].seq;
      const size_t row = size_t(row_of[i]);
      sampled_[i] = step_rows_.row_index[row] < 0
                        ? s->sampler.sample_candidates(step_rows_.candidates[row])
                        : s->sampler.sample(row_logits(int64_t(row)), s->tokens, generated_of(s));
    }
  });
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    Sequence* s = plan.chunks[i].seq;
    if (row_of[i] < 0) continue;
    if (!s->matcher) {
      emit_token(s, sampled_[i]);
      continue;
    }
    const std::span<const float> logits = row_logits(row_of[i]);
    const std::span<const int32_t> generated = generated_of(s);
    const int64_t remaining =
        std::min(s->params.max_new_tokens - s->generated(),
                 model_.max_context() - int64_t(s->tokens.size()));
    const SampleResult r = sample_with_grammar(*s->matcher, s->sampler, logits, s->tokens,
                                               generated, s->params.eos_ids, remaining, masked_);
    const auto& eos = s->params.eos_ids;
    if (std::find(eos.begin(), eos.end(), int64_t(r.token)) == eos.end() &&
        !s->matcher->accept(r.token)) {
      finish(s, "error", "internal error: the grammar refused the sampled token");
      continue;
    }
    emit_token(s, r);
  }
}

}  // namespace qw

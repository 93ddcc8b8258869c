#include "engine/throughput_bench.h"

#include <algorithm>
#include <chrono>
#include <random>

namespace qw {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

Expected<nlohmann::ordered_json> run_throughput_bench(ModelExecutor& model,
                                                      const ThroughputBenchOptions& o) {
  std::mt19937_64 rng(o.seed);
  const int64_t vocab = model.config().vocab_size;
  auto rand_tokens = [&](int64_t n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = int32_t(rng() % uint64_t(vocab));
    return t;
  };
  nlohmann::ordered_json out;
  out["device"] = model.device_name();
  std::vector<float> logits;
  constexpr SeqId kBenchSeq = 1u << 30;  // far from ids a server would use
  for (int64_t n : o.prompt_lengths) {
    if (n > model.max_context()) continue;
    const auto prompt = rand_tokens(n);
    std::vector<double> ts;
    for (int rep = 0; rep <= o.repeats; ++rep) {  // the first run is warm-up
      StepInput in;
      in.seq = kBenchSeq;
      in.tokens = prompt;
      const double t = now_s();
      QW_RETURN_IF_ERROR(model.step(std::span<const StepInput>(&in, 1), logits));
      if (rep > 0) ts.push_back(now_s() - t);
      model.release(kBenchSeq);
    }
    const double med = median(ts);
    out["ttft_ms"][std::to_string(n)] = med * 1e3;
    out["prefill_tok_s"][std::to_string(n)] = double(n) / med;
  }
  for (int64_t B : o.batch_sizes) {
    std::vector<std::vector<int32_t>> prompts;
    std::vector<StepInput> ins(static_cast<size_t>(B));
    for (int64_t i = 0; i < B; ++i) prompts.push_back(rand_tokens(o.decode_context));
    for (int64_t i = 0; i < B; ++i) {
      ins[size_t(i)].seq = kBenchSeq + SeqId(i);
      ins[size_t(i)].tokens = prompts[size_t(i)];
    }
    QW_RETURN_IF_ERROR(model.step(ins, logits));
    std::vector<int32_t> tok(static_cast<size_t>(B));
    std::vector<double> ts;
    for (int64_t s = 0; s < o.decode_steps; ++s) {
      for (int64_t i = 0; i < B; ++i) {
        tok[size_t(i)] = int32_t(rng() % uint64_t(vocab));
        ins[size_t(i)].tokens = std::span<const int32_t>(&tok[size_t(i)], 1);
        ins[size_t(i)].start_pos = o.decode_context + s;
      }
      const double t = now_s();
      QW_RETURN_IF_ERROR(model.step(ins, logits));
      if (s >= 4) ts.push_back(now_s() - t);  // a few warm-up steps
    }
    for (int64_t i = 0; i < B; ++i) model.release(kBenchSeq + SeqId(i));
    const double med = median(ts);
    out["decode_step_ms"][std::to_string(B)] = med * 1e3;
    out["decode_tok_s"][std::to_string(B)] = double(B) / med;
  }
  return out;
}

}  // namespace qw

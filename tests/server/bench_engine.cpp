// Host-side cost of one serving step, with the model taken out: an executor that returns
// fixed random logits at once, B sequences decoding greedily (or with Qwen's sampling
// defaults) through the real Engine, scheduler, samplers, detokenizer and sinks. Steps/s
// here is the ceiling the host puts on serving throughput for a 152K vocabulary.
//   bench_engine [batch=64] [steps=200] [greedy|sample] [sampling_threads=0]
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <string>

#include "serving/engine.h"

using namespace qw;

namespace {

class InstantExecutor : public ModelExecutor {
 public:
  explicit InstantExecutor(int64_t vocab) {
    cfg_.vocab_size = vocab;
    cfg_.max_position_embeddings = 32768;
    std::mt19937_64 rng(1);
    std::normal_distribution<float> nd(0.f, 3.f);
    rows_.resize(8, std::vector<float>(size_t(vocab)));
    for (auto& r : rows_)
      for (float& x : r) x = nd(rng);
  }
  const ModelConfig& config() const override { return cfg_; }
  std::string device_name() const override { return "instant"; }
  Status step(std::span<const StepInput> inputs, std::vector<float>& logits) override {
    logits.clear();
    for (const auto& in : inputs) {
      len_[in.seq] += int64_t(in.tokens.size());
      if (in.want_logits) {
        const auto& r = rows_[(in.seq + size_t(len_[in.seq])) % rows_.size()];
        logits.insert(logits.end(), r.begin(), r.end());
      }
    }
    return Status::Ok();
  }
  int64_t attach_prefix(SeqId, std::span<const int32_t>) override { return 0; }
  void release(SeqId seq) override { len_.erase(seq); }
  bool can_append(SeqId, int64_t) const override { return true; }
  KvUsage kv_usage() const override { return {}; }
  int64_t max_context() const override { return cfg_.max_position_embeddings; }

 private:
  ModelConfig cfg_;
  std::vector<std::vector<float>> rows_;
  std::unordered_map<SeqId, int64_t> len_;
};

}  // namespace

int main(int argc, char** argv) {
  const int batch = argc > 1 ? std::stoi(argv[1]) : 64;
  const int steps = argc > 2 ? std::stoi(argv[2]) : 200;
  const bool greedy = argc > 3 ? std::string(argv[3]) != "sample" : true;
  const int threads = argc > 4 ? std::stoi(argv[4]) : 0;
  auto tok = Tokenizer::from_hf_dir(QW_TEST_DATA_DIR);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().message().c_str());
    return 1;
  }
  InstantExecutor model(152064);
  EngineOptions eo;
  eo.sampling_threads = threads;
  Engine engine(model, *tok, eo);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < batch; ++i) {
    RequestParams p;
    p.prompt.assign(512, 0);
    for (size_t j = 0; j < p.prompt.size(); ++j) p.prompt[j] = int32_t((j * 7919 + size_t(i)) % 150000);
    p.max_new_tokens = steps;
    p.sampling.temperature = greedy ? 0.0 : 0.7;
    p.sampling.top_k = 20;
    p.sampling.top_p = 0.8;
    p.sampling.repetition_penalty = 1.05;
    p.sampling.seed = uint64_t(i);
    engine.submit(std::move(p), [&](RequestEvent&& ev) {
      if (!ev.finished) return;
      std::lock_guard<std::mutex> lock(mu);
      ++done;
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done == batch; });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto st = engine.stats();
  std::printf("batch %d, %s, %llu steps, %llu tokens in %.2f s: %.2f ms/step, %.0f tok/s host ceiling\n",
              batch, greedy ? "greedy+rep1.05" : "t0.7 k20 p0.8 rep1.05", (unsigned long long)st.steps,
              (unsigned long long)st.generated_tokens, s, s * 1e3 / double(st.steps),
              double(st.generated_tokens) / s);
  return 0;
}

// The generation loop over a scripted executor: chunked prefill, stop conditions,
// streaming with held-back stop-string prefixes, cancel, errors.
#include <doctest/doctest.h>

#include <map>

#include "engine/generator.h"

using namespace qw;

namespace {

// Predicts token (last + 1) % vocab, so a reply from prompt [.., x] is x+1, x+2, ...
class CountingExecutor : public ModelExecutor {
 public:
  explicit CountingExecutor(int64_t vocab, int64_t max_pos = 64) {
    cfg_.vocab_size = vocab;
    cfg_.max_position_embeddings = max_pos;
  }
  const ModelConfig& config() const override { return cfg_; }
  std::string device_name() const override { return "counting"; }
  Status step(std::span<const StepInput> inputs, std::vector<float>& logits) override {
    logits.clear();
    for (const auto& in : inputs) {
      if (in.start_pos != cached_[in.seq]) return Status::Error("bad start_pos");
      cached_[in.seq] += int64_t(in.tokens.size());
      chunks.push_back(int64_t(in.tokens.size()));
      if (in.want_logits) {
        std::vector<float> row(size_t(cfg_.vocab_size), 0.0f);
        row[size_t((in.tokens.back() + 1) % cfg_.vocab_size)] = 10.0f;
        logits.insert(logits.end(), row.begin(), row.end());
      }
    }
    return Status::Ok();
  }
  void release(SeqId seq) override {
    cached_.erase(seq);
    ++releases;
  }
  bool can_append(SeqId seq, int64_t n) const override {
    auto it = cached_.find(seq);
    return (it == cached_.end() ? 0 : it->second) + n <= cfg_.max_position_embeddings;
  }
  int64_t attach_prefix(SeqId seq, std::span<const int32_t>) override { return cached_[seq]; }
  KvUsage kv_usage() const override { return {}; }
  int64_t max_context() const override { return cfg_.max_position_embeddings; }

  std::vector<int64_t> chunks;
  int releases = 0;

 private:
  ModelConfig cfg_;
  std::map<SeqId, int64_t> cached_;
};

std::string letter(int32_t id) {
  return std::string(1, char('a' + id % 26));
}

GenerateRequest request(std::vector<int32_t> prompt, int64_t max_new) {
  GenerateRequest r;
  r.prompt = std::move(prompt);
  r.max_new_tokens = max_new;
  r.sampling.temperature = 0.0;
  return r;
}

}  // namespace

TEST_CASE("prefill in chunks, then decode to max_new_tokens") {
  CountingExecutor ex(26);
  auto req = request({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 5);
  req.prefill_chunk = 4;
  auto r = generate(ex, req, letter);
  REQUIRE(r.ok());
  CHECK(r->tokens == std::vector<int32_t>{10, 11, 12, 13, 14});
  CHECK(r->text == "klmno");
  CHECK(r->finish == FinishReason::Length);
  // 4 + 4 + 2 prompt tokens, then 4 decode steps (the last token is not fed back).
  CHECK(ex.chunks == std::vector<int64_t>{4, 4, 2, 1, 1, 1, 1});
  CHECK(ex.releases == 1);
}

TEST_CASE("an eos id ends the reply without adding text") {
  CountingExecutor ex(26);
  auto req = request({0}, 10);
  req.eos_ids = {3};
  auto r = generate(ex, req, letter);
  REQUIRE(r.ok());
  CHECK(r->tokens == std::vector<int32_t>{1, 2, 3});
  CHECK(r->text == "bc");
  CHECK(r->finish == FinishReason::Eos);
}

TEST_CASE("stop strings span tokens; streamed text never shows them") {
  CountingExecutor ex(26);
  auto req = request({0}, 20);
  req.stop = {"def", "zz"};
  std::string streamed;
  auto r = generate(ex, req, letter, [&](const TokenEvent& ev) { streamed += ev.text; });
  REQUIRE(r.ok());
  CHECK(r->text == "bc");
  CHECK(streamed == "bc");
  CHECK(r->finish == FinishReason::Stop);
  CHECK(r->tokens.size() == 5);  // b c d e f
}

TEST_CASE("held-back text is released when no stop string completes") {
  CountingExecutor ex(26);
  auto req = request({0}, 3);
  req.stop = {"dx"};
  std::vector<std::string> deltas;
  auto r = generate(ex, req, letter, [&](const TokenEvent& ev) { deltas.emplace_back(ev.text); });
  REQUIRE(r.ok());
  CHECK(r->text == "bcd");
  // "d" could start "dx": held back at its token, released at the end.
  REQUIRE(deltas.size() == 4);
  CHECK(deltas[2].empty());
  CHECK(deltas[3] == "d");
}

TEST_CASE("cancel stops a reply; the context limit ends it") {
  CountingExecutor ex(26, 8);
  std::atomic<bool> cancel{false};
  auto req = request({0}, 50);
  int n = 0;
  auto r = generate(
      ex, req, letter,
      [&](const TokenEvent&) {
        if (++n == 3) cancel = true;
      },
      &cancel);
  REQUIRE(r.ok());
  CHECK(r->finish == FinishReason::Cancelled);
  CHECK(r->tokens.size() == 3);

  auto full = generate(ex, request({0, 1}, 50), letter);
  REQUIRE(full.ok());
  CHECK(full->finish == FinishReason::ContextFull);
  CHECK(full->tokens.size() == 7);  // 2 + 6 cached = 8, plus the token sampled last
}

TEST_CASE("a prompt longer than max_position_embeddings is refused, naming both numbers") {
  CountingExecutor ex(26, 8);
  auto r = generate(ex, request(std::vector<int32_t>(9, 1), 4), letter);
  REQUIRE(!r.ok());
  CHECK(r.status().message().find("9 tokens") != std::string::npos);
  CHECK(r.status().message().find("max_position_embeddings (8)") != std::string::npos);
}

TEST_CASE("keep_cache continues a conversation from the cached prefix") {
  CountingExecutor ex(26);
  auto req = request({0, 1}, 3);
  req.keep_cache = true;
  auto r = generate(ex, req, letter);
  REQUIRE(r.ok());
  CHECK(r->cached_tokens == 4);  // prompt 2 + tokens 2, 3 fed back; 4 was not
  auto req2 = request({0, 1, 2, 3, 4, 9}, 1);
  req2.cached_prefix = r->cached_tokens;
  ex.chunks.clear();
  auto r2 = generate(ex, req2, letter);
  REQUIRE(r2.ok());
  CHECK(ex.chunks == std::vector<int64_t>{2});
  CHECK(r2->tokens == std::vector<int32_t>{10});
}

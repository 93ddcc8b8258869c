// Sampler semantics on hand-computed examples (HF generate / OpenAI definitions).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "engine/sampler.h"

using namespace qw;

namespace {
const float kInf = std::numeric_limits<float>::infinity();
SampleResult run(Sampler& s, const std::vector<float>& logits, const std::vector<int32_t>& ctx = {},
                 const std::vector<int32_t>& gen = {}) {
  return s.sample(logits, ctx, gen);
}
SamplingParams greedy() {
  SamplingParams p;
  p.temperature = 0.0;
  return p;
}
}  // namespace

TEST_CASE("temperature 0 is greedy; ties go to the lowest id") {
  Sampler s(greedy());
  CHECK(run(s, {0.1f, 2.0f, -1.0f, 2.0f}).token == 1);
  CHECK(run(s, {-5.0f, -4.0f, -6.0f}).token == 1);
}

TEST_CASE("repetition penalty: HF's divide positive, multiply negative, once per id") {
  SamplingParams p = greedy();
  p.repetition_penalty = 2.0;
  Sampler s(p);
  // id 0 appears twice in the context but is penalised once: 2 -> 1; id 1: -2 -> -4.
  const auto r = run(s, {2.0f, -2.0f, 1.5f, 0.5f}, {0, 1, 0});
  CHECK(s.last_processed() == std::vector<float>{1.0f, -4.0f, 1.5f, 0.5f});
  CHECK(r.token == 2);
}

TEST_CASE("presence and frequency penalties count generated tokens only") {
  SamplingParams p = greedy();
  p.presence_penalty = 1.0;
  p.frequency_penalty = 0.5;
  Sampler s(p);
  // Prompt token 0 is not penalised; id 2 generated twice: 3 - (2*0.5 + 1) = 1; id 3: 2.5 - 1.5.
  run(s, {3.0f, 0.0f, 3.0f, 2.5f}, {0, 2, 2, 3}, {2, 2, 3});
  CHECK(s.last_processed() == std::vector<float>{3.0f, 0.0f, 1.0f, 1.0f});
}

TEST_CASE("top-k keeps the k largest and ties with the k-th") {
  SamplingParams p;
  p.top_k = 2;
  Sampler s(p);
  run(s, {1.0f, 3.0f, 2.0f, 3.0f, 0.0f});
  CHECK(s.last_processed() == std::vector<float>{-kInf, 3.0f, -kInf, 3.0f, -kInf});
  p.top_k = 3;
  Sampler s3(p);
  run(s3, {1.0f, 3.0f, 2.0f, 3.0f, 0.0f});
  CHECK(s3.last_processed() == std::vector<float>{-kInf, 3.0f, 2.0f, 3.0f, -kInf});
}

TEST_CASE("top-p drops the unlikely tail whose mass is <= 1 - top_p") {
  const std::vector<float> logits = {std::log(0.1f), std::log(0.2f), std::log(0.3f),
                                     std::log(0.4f)};
  SamplingParams p;
  p.top_p = 0.5;  // ascending cumsum 0.1, 0.3, 0.6, 1.0; removes cum <= 0.5
  Sampler s(p);
  run(s, logits);
  CHECK(s.last_processed()[0] == -kInf);
  CHECK(s.last_processed()[1] == -kInf);
  CHECK(s.last_processed()[2] == logits[2]);
  CHECK(s.last_processed()[3] == logits[3]);
  p.top_p = 0.75;  // removes cum <= 0.25: only id 0
  Sampler s2(p);
  run(s2, logits);
  CHECK(s2.last_processed()[0] == -kInf);
  CHECK(s2.last_processed()[1] == logits[1]);
  p.top_p = 0.01;  // the most likely token always survives
  Sampler s3(p);
  CHECK(run(s3, logits).token == 3);
}

TEST_CASE("temperature scales before top-k/top-p") {
  SamplingParams p;
  p.temperature = 0.5;
  Sampler s(p);
  run(s, {1.0f, -2.0f});
  CHECK(s.last_processed() == std::vector<float>{2.0f, -4.0f});
}

TEST_CASE("seeded sampling is reproducible and follows the distribution") {
  const std::vector<float> logits = {std::log(0.1f), std::log(0.2f), std::log(0.3f),
                                     std::log(0.4f)};
  SamplingParams p;
  p.seed = 42;
  Sampler a(p), b(p);
  p.seed = 43;
  Sampler c(p);
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 200; ++i) {
    ta.push_back(run(a, logits).token);
    tb.push_back(run(b, logits).token);
    tc.push_back(run(c, logits).token);
  }
  CHECK(ta == tb);
  CHECK(ta != tc);
  Sampler d(p);
  int counts[4] = {0, 0, 0, 0};
  const int n = 40000;
  for (int i = 0; i < n; ++i) ++counts[run(d, logits).token];
  for (int i = 0; i < 4; ++i)
    CHECK(double(counts[i]) / n == doctest::Approx(0.1 * (i + 1)).epsilon(0.1));
}

TEST_CASE("logprobs: log-softmax of the processed logits, top-N best first") {
  SamplingParams p = greedy();
  p.logprobs = 2;
  Sampler s(p);
  const auto r = run(s, {std::log(0.2f), std::log(0.5f), std::log(0.3f)});
  CHECK(r.token == 1);
  CHECK(r.logprob == doctest::Approx(std::log(0.5)).epsilon(1e-6));
  REQUIRE(r.top.size() == 2);
  CHECK(r.top[0].id == 1);
  CHECK(r.top[1].id == 2);
  CHECK(r.top[1].logprob == doctest::Approx(std::log(0.3)).epsilon(1e-6));
}

TEST_CASE("generation_config defaults and validation") {
  GenerationDefaults g;
  g.do_sample = true;
  g.temperature = 0.7;
  g.top_p = 0.8;
  g.top_k = 20;
  g.repetition_penalty = 1.05;
  auto p = SamplingParams::from_defaults(g);
  CHECK(p.temperature == 0.7);
  CHECK(p.top_k == 20);
  g.do_sample = false;
  CHECK(SamplingParams::from_defaults(g).temperature == 0.0);
  p.top_p = 0.0;
  CHECK(p.validate().message().find("top_p") != std::string::npos);
  p.top_p = 1.0;
  p.temperature = -1;
  CHECK(p.validate().message().find("temperature") != std::string::npos);
}

TEST_CASE("top-p renormalises over what top-k kept (HF applies top-k first)") {
  const std::vector<float> logits = {std::log(0.1f), std::log(0.2f), std::log(0.3f),
                                     std::log(0.4f)};
  SamplingParams p;
  p.top_k = 3;    // keeps 0.2, 0.3, 0.4 -> renormalised 2/9, 3/9, 4/9
  p.top_p = 0.7;  // removes cumulative <= 0.3: only 2/9
  Sampler s(p);
  run(s, logits);
  CHECK(s.last_processed()[0] == -kInf);
  CHECK(s.last_processed()[1] == -kInf);
  CHECK(s.last_processed()[2] == logits[2]);
  CHECK(s.last_processed()[3] == logits[3]);
}

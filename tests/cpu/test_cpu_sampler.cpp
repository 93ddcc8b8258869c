// Sampler semantics on hand-computed examples (HF generate / OpenAI definitions).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>

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

namespace {
// HF's warpers written out plainly over the whole vocabulary (full sorts, every exp): the
// sampler's selection shortcuts must keep exactly these tokens and draw the same ones.
struct TextbookSampler {
  SamplingParams p;
  std::mt19937_64 rng;
  explicit TextbookSampler(const SamplingParams& sp) : p(sp), rng(sp.seed) {}
  int32_t sample(std::vector<float> w, std::vector<float>* processed) {
    for (float& x : w) x /= float(p.temperature);
    const size_t V = w.size();
    if (p.top_k > 0 && size_t(p.top_k) < V) {
      std::vector<float> tmp(w);
      std::sort(tmp.begin(), tmp.end(), std::greater<>());
      const float kth = tmp[size_t(p.top_k - 1)];
      for (float& x : w)
        if (x < kth) x = -kInf;
    }
    if (p.top_p < 1.0) {
      std::vector<int32_t> order;
      for (size_t i = 0; i < V; ++i)
        if (w[i] != -kInf) order.push_back(int32_t(i));
      std::stable_sort(order.begin(), order.end(),
                       [&](int32_t a, int32_t b) { return w[size_t(a)] < w[size_t(b)]; });
      const double mx = w[size_t(order.back())];
      double sum = 0;
      for (int32_t id : order) sum += std::exp(double(w[size_t(id)]) - mx);
      double cum = 0;
      for (size_t i = 0; i + 1 < order.size(); ++i) {
        cum += std::exp(double(w[size_t(order[i])]) - mx) / sum;
        if (cum <= 1.0 - p.top_p) w[size_t(order[i])] = -kInf;
        else break;
      }
    }
    const double mx = *std::max_element(w.begin(), w.end());
    double sum = 0;
    for (float x : w) sum += std::exp(double(x) - mx);
    const double u = double(rng() >> 11) * 0x1.0p-53 * sum;
    double cum = 0;
    int32_t tok = int32_t(std::max_element(w.begin(), w.end()) - w.begin());
    for (size_t i = 0; i < V; ++i) {
      if (w[i] == -kInf) continue;
      cum += std::exp(double(w[i]) - mx);
      if (u < cum) {
        tok = int32_t(i);
        break;
      }
    }
    *processed = w;
    return tok;
  }
};
}  // namespace

TEST_CASE("fast top-k / top-p selection equals the textbook warpers on random rows") {
  std::mt19937_64 rng(5);
  struct Case {
    double t;
    int64_t k;
    double p;
    size_t V;
  };
  const Case cases[] = {{0.7, 20, 0.8, 5000},  {1.0, 0, 0.9, 5000},   {1.3, 0, 1.0, 3000},
                        {1.0, 50, 1.0, 4000},  {0.5, 0, 0.3, 20000},  {1.0, 1, 0.5, 1000},
                        {0.9, 200, 0.95, 8000}, {0.7, 20, 0.8, 152064}};
  for (const Case& c : cases) {
    SamplingParams p;
    p.temperature = c.t;
    p.top_k = c.k;
    p.top_p = c.p;
    p.seed = 77;
    Sampler fast(p);
    TextbookSampler ref(p);
    std::normal_distribution<float> nd(0.f, 3.f);
    const int draws = c.V > 100000 ? 5 : 60;
    int same_token = 0, same_mask = 0;
    for (int d = 0; d < draws; ++d) {
      std::vector<float> row(c.V);
      for (float& x : row) x = nd(rng);
      if (d % 3 == 0)  // ties and masked (grammar) entries
        for (size_t i = 0; i < c.V; i += 7) row[i] = i % 2 ? row[0] : -kInf;
      std::vector<float> want;
      const int32_t want_tok = ref.sample(row, &want);
      same_token += fast.sample(row, {}, {}).token == want_tok;
      same_mask += fast.last_processed() == want;
    }
    INFO("t " << c.t << " k " << c.k << " p " << c.p << " V " << c.V);
    CHECK(same_mask == draws);
    CHECK(same_token == draws);
  }
}

TEST_CASE("sampling from a row's candidates draws what sampling from the row draws") {
  // Random rows with many ties (values on a coarse grid), random penalties, temperatures,
  // top-k / top-p and logprobs: a Sampler fed reduce_row_to_candidates() and one fed the
  // full row, same seed, must draw the same tokens with the same logprobs, step after step.
  std::mt19937 rng(11);
  int compared = 0, overflowed = 0, whole_row = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int V = 50 + int(rng() % 3000);
    SamplingParams p;
    const int kind = int(rng() % 4);
    p.temperature = kind == 0 ? 0.0 : 0.2 + 1.5 * double(rng() % 100) / 100.0;
    p.top_k = kind == 3 ? 0 : int64_t(1 + rng() % 80);
    p.top_p = rng() % 2 ? 1.0 : 0.3 + 0.7 * double(rng() % 100) / 100.0;
    p.repetition_penalty = rng() % 2 ? 1.0 : 0.8 + 0.5 * double(rng() % 100) / 100.0;
    p.presence_penalty = rng() % 3 == 0 ? 0.5 : 0.0;
    p.frequency_penalty = rng() % 3 == 0 ? 0.25 : 0.0;
    p.logprobs = int(rng() % 4) - 1 + (rng() % 5 == 0 ? 70 : 0);
    p.seed = rng();
    Sampler full(p), reduced(p);
    std::vector<int32_t> context;
    for (int i = 0; i < int(rng() % 40); ++i) context.push_back(int32_t(rng() % uint32_t(V)));
    const size_t prompt_len = context.size();
    std::vector<float> row(static_cast<size_t>(V));
    std::vector<LogitPenalty> storage;
    RowCandidates cands;
    for (int step = 0; step < 6; ++step) {
      const float grid = rng() % 2 ? 0.25f : 1e-3f;
      for (float& x : row) x = grid * float(int(rng() % 41) - 20);
      const std::span<const int32_t> generated(context.data() + prompt_len, context.size() - prompt_len);
      const CandidateRequest req = reduced.candidate_request(context, generated, storage);
      const SampleResult a = full.sample(row, context, generated);
      if (req.k == 0) {
        ++whole_row;
        CHECK((p.top_k <= 0 || p.top_k > kMaxCandidates || p.logprobs > kMaxCandidates));
        break;  // the streams would diverge: the engine samples this row whole
      }
      reduce_row_to_candidates(row, req, cands);
      if (!cands.complete) {
        ++overflowed;
        break;
      }
      const SampleResult b = reduced.sample_candidates(cands);
      REQUIRE_MESSAGE(a.token == b.token, "trial " << trial << " step " << step);
      if (p.logprobs >= 0) {
        CHECK(a.logprob == b.logprob);
        REQUIRE(a.top.size() == b.top.size());
        for (size_t i = 0; i < a.top.size(); ++i) {
          CHECK(a.top[i].id == b.top[i].id);
          CHECK(a.top[i].logprob == b.top[i].logprob);
        }
      }
      ++compared;
      context.push_back(a.token);
    }
  }
  MESSAGE(compared << " draws compared, " << overflowed << " rows with overflowing ties, "
                   << whole_row << " whole-row requests");
  CHECK(compared > 400);
  CHECK(overflowed > 0);  // the coarse grid makes some k-th values tie past kMaxCandidates
  CHECK(whole_row > 0);
}

TEST_CASE("candidate requests: k, temperature and merged penalties") {
  SamplingParams p;
  p.temperature = 0.7;
  p.top_k = 20;
  p.repetition_penalty = 1.05;
  p.presence_penalty = 0.5;
  p.frequency_penalty = 0.25;
  Sampler s(p);
  std::vector<LogitPenalty> storage;
  const std::vector<int32_t> ctx = {5, 3, 5, 9, 3, 3};  // generated: {9, 3, 3}
  const auto req = s.candidate_request(ctx, std::span<const int32_t>(ctx).subspan(3), storage);
  CHECK(req.k == 20);
  CHECK(req.temperature == 0.7f);
  REQUIRE(req.penalties.size() == 3);
  CHECK(req.penalties[0].id == 3);
  CHECK(req.penalties[0].delta == doctest::Approx(1.0));  // 0.25 * 2 + 0.5
  CHECK(req.penalties[1].id == 5);
  CHECK(req.penalties[1].delta == 0.f);
  CHECK(req.penalties[2].id == 9);
  CHECK(req.penalties[2].delta == doctest::Approx(0.75));
  for (const auto& e : req.penalties) CHECK(e.repeat == 1);
  SamplingParams g;
  g.temperature = 0;
  g.logprobs = 5;
  CHECK(Sampler(g).candidate_request(ctx, {}, storage).k == 5);
  CHECK(Sampler(g).candidate_request(ctx, {}, storage).temperature == 1.f);
  SamplingParams open;  // temperature 1, no top-k: needs the whole row
  CHECK(Sampler(open).candidate_request(ctx, {}, storage).k == 0);
}

// The damping search (compiler/gptq/damp_search.h): which calibration positions validate, the
// choice and its tie order, what it does on one linear, and that a model quantized with it
// (and without it: plain GPTQ, bit for bit) uses exactly the fit/validation split it says.
//
// What the synthetic linears show (k = 256 inputs, n = 64 outputs, group 32), and so what is
// asserted:
// * rank-deficient fit data (a): 150 fit and 80 validation tokens of activations that fill
//   all 256 input directions, held-out tokens from the same distribution. GPTQ at d = 0.01
//   on every calibration token (no search) spreads its rounding errors into directions its
//   Hessian has not seen and loses to RTN on held-out tokens; the search sees that on the
//   validation tokens and ships RTN or a larger dampening, no worse than RTN on held-out.
// * plentiful correlated data (b): 4,000 fit tokens from a 32-dimensional latent mixing (the
//   structure GPTQ exploits); the search keeps d and beats RTN on held-out tokens clearly.
// Both fail when the search is off (a) or always picks RTN or 100d (b).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>

#include "compiler/gptq/calib_text.h"
#include "compiler/gptq/damp_search.h"
#include "compiler/gptq/model_quantizer.h"
#include "compiler/gptq/quality_report.h"
#include "compiler/gptq/quantizer.h"
#include "compiler/hf_config.h"
#include "cpu/ops.h"
#include "quant_test_support.h"
#include "tokenizer/tokenizer.h"

using namespace qw;
using namespace qw::gptq;
namespace fs = std::filesystem;

namespace {

std::vector<std::vector<int32_t>> sequences_of_lengths(const std::vector<int64_t>& lengths) {
  std::vector<std::vector<int32_t>> s;
  for (int64_t n : lengths) s.emplace_back(size_t(n), 7);
  return s;
}

}  // namespace

TEST_CASE("damp search: validation positions are every 5th block of 64 in each sequence") {
  for (int64_t len : {int64_t(1), int64_t(64), int64_t(255), int64_t(256), int64_t(320),
                      int64_t(513), int64_t(1000)}) {
    CAPTURE(len);
    // The search needs 64 validation tokens: plan on this length plus one of 320.
    const DampSearchPlan p = plan_damp_search(sequences_of_lengths({len, 320}), true);
    REQUIRE(p.enabled);
    REQUIRE(p.val_mask.size() == size_t(len + 320));
    int64_t val = 0;
    for (int64_t t = 0; t < len; ++t) {
      CAPTURE(t);
      // Blocks [256, 320), [576, 640), [896, 960), ... by the position in the sequence.
      const bool want = (t >= 256 && t < 320) || (t >= 576 && t < 640) || (t >= 896 && t < 960);
      CHECK(bool(p.val_mask[size_t(t)]) == want);
      CHECK(is_validation_position(t) == want);
      val += want;
    }
    // The second sequence starts over at position 0.
    for (int64_t t = 0; t < 320; ++t) CHECK(bool(p.val_mask[size_t(len + t)]) == (t >= 256));
    CHECK(p.val_tokens == val + 64);
    CHECK(p.fit_tokens == len + 320 - p.val_tokens);
  }
  // Sequence lengths 385 and 513 together: validation 64 + 64.
  const DampSearchPlan p = plan_damp_search(sequences_of_lengths({385, 513}), true);
  CHECK(p.enabled);
  CHECK(!p.by_sequence);
  CHECK(p.val_tokens == 128);
  CHECK(p.fit_tokens == 321 + 449);
  // Sequences at [0, 385), [385, 898): runs fit [0, 256), val [256, 320), fit [320, 641),
  // val [641, 705), fit [705, 898).
  const std::vector<TokenRun> runs = mask_runs(p.val_mask);
  REQUIRE(runs.size() == 5);
  const int64_t begins[] = {0, 256, 320, 641, 705}, counts[] = {256, 64, 321, 64, 193};
  for (size_t i = 0; i < runs.size(); ++i) {
    CAPTURE(i);
    CHECK(runs[i].begin == begins[i]);
    CHECK(runs[i].count == counts[i]);
    CHECK(runs[i].val == (i % 2 == 1));
  }
}

TEST_CASE("damp search: with 3 or more sequences, every 5th sequence (i % 5 == 2) validates") {
  const DampSearchPlan two = plan_damp_search(sequences_of_lengths({320, 320}), true);
  CHECK(!two.by_sequence);  // blocks
  CHECK(two.val_tokens == 2 * 64);
  // Three (the built-in text's count): the third, whole.
  const DampSearchPlan three = plan_damp_search(sequences_of_lengths({512, 512, 512}), true);
  CHECK(three.by_sequence);
  CHECK(three.val_tokens == 512);
  CHECK(three.fit_tokens == 1024);
  CHECK(mask_runs(three.val_mask).size() == 2);
  // 12 sequences: 2 and 7 validate whole, whatever their length.
  const std::vector<int64_t> lens = {100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 5, 1};
  const DampSearchPlan p = plan_damp_search(sequences_of_lengths(lens), true);
  REQUIRE(p.enabled);
  CHECK(p.by_sequence);
  size_t t = 0;
  int64_t val = 0;
  for (size_t q = 0; q < lens.size(); ++q)
    for (int64_t i = 0; i < lens[q]; ++i, ++t) {
      CAPTURE(q);
      CHECK(bool(p.val_mask[t]) == (q == 2 || q == 7));
      val += q == 2 || q == 7;
    }
  CHECK(t == p.val_mask.size());
  CHECK(p.val_tokens == 80 + 30);
  CHECK(val == p.val_tokens);
  CHECK(p.fit_tokens == 556 - 110);
  CHECK(mask_runs(p.val_mask).size() == 5);  // fit, val, fit, val, fit
  // Whole sequences that hold fewer than 64 tokens: no search, as with blocks.
  CHECK(!plan_damp_search(sequences_of_lengths({9, 9, 9, 9, 9}), true).enabled);
}

TEST_CASE("damp search: too few validation tokens, or not asked for, is no search") {
  // 512-token sequences give 64 each; one of 319 gives 63: too few, said in one line.
  const DampSearchPlan few = plan_damp_search(sequences_of_lengths({319, 200}), true);
  CHECK(few.requested);
  CHECK(!few.enabled);
  CHECK(few.val_tokens == 63);
  CHECK(few.val_mask.empty());
  CHECK(few.note.find("damping search off: 63 validation tokens") == 0);
  CHECK(few.note.find('\n') == std::string::npos);
  const DampSearchPlan off = plan_damp_search(sequences_of_lengths({512, 512}), false);
  CHECK(!off.requested);
  CHECK(!off.enabled);
  CHECK(off.note.empty());
  CHECK(plan_damp_search(sequences_of_lengths({320}), true).enabled);
}

TEST_CASE("damp search: the smallest validation error wins; ties: RTN, then larger damping") {
  using E = std::array<double, kDampCandidates>;
  CHECK(choose_damp_candidate(E{3, 1, 2, 2}) == 1);
  CHECK(choose_damp_candidate(E{3, 2, 1, 2}) == 2);
  CHECK(choose_damp_candidate(E{3, 2, 2, 1}) == 3);
  CHECK(choose_damp_candidate(E{1, 2, 2, 2}) == 0);
  CHECK(choose_damp_candidate(E{1, 1, 1, 1}) == 0);  // a tie with RTN is RTN
  CHECK(choose_damp_candidate(E{2, 1, 1, 1}) == 3);  // then the largest damping
  CHECK(choose_damp_candidate(E{2, 1, 1, 3}) == 2);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(choose_damp_candidate(E{nan, 2, 1, nan}) == 2);
  CHECK(choose_damp_candidate(E{1, nan, nan, nan}) == 0);
  // The summary line counts each kind.
  std::vector<DampChoice> cs(6);
  cs[0].candidate = 0, cs[1].candidate = 1, cs[2].candidate = 1, cs[3].candidate = 2;
  cs[4].candidate = 3, cs[5].candidate = 0;
  CHECK(damp_search_summary(cs) == "damping search: 6 linears: 4 GPTQ (d 2, 10d 1, 100d 1), 2 RTN");
}

namespace {

// One linear and its activations: fit, validation and held-out tokens of one distribution.
struct Linear {
  int64_t n = 64, k = 256;
  std::vector<float> w;
  std::vector<float> fit, val, held;
  int64_t t_fit = 0, t_val = 0, t_held = 0;
};

// x = (z A + noise) * scale: `latent` mixing dimensions (k: activations fill every input
// direction) and `noise` independent per input, a few outlier channels.
Linear make_linear(uint32_t seed, int64_t latent, float noise, int64_t t_fit, int64_t t_val,
                   int64_t t_held) {
  Linear L;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  L.w.resize(size_t(L.n * L.k));
  for (auto& v : L.w) v = nd(rng) * 0.05f;
  std::vector<float> a(size_t(latent * L.k)), scale(size_t(L.k));
  for (auto& v : a) v = nd(rng) / std::sqrt(float(latent));
  for (int64_t c = 0; c < L.k; ++c)
    scale[size_t(c)] = (c % 17 == 0 ? 4.0f : 1.0f) * (0.5f + float(rng() % 100) / 100.0f);
  auto gen = [&](int64_t t, std::vector<float>& x) {
    x.assign(size_t(t * L.k), 0.0f);
    std::vector<float> z(static_cast<size_t>(latent));
    for (int64_t i = 0; i < t; ++i) {
      for (auto& v : z) v = nd(rng);
      for (int64_t c = 0; c < L.k; ++c) {
        float s = noise * nd(rng);
        for (int64_t j = 0; j < latent; ++j) s += z[size_t(j)] * a[size_t(j * L.k + c)];
        x[size_t(i * L.k + c)] = s * scale[size_t(c)];
      }
    }
  };
  L.t_fit = t_fit, L.t_val = t_val, L.t_held = t_held;
  gen(t_fit, L.fit);
  gen(t_val, L.val);
  gen(t_held, L.held);
  return L;
}

struct Searched {
  SearchedLinear s;
  double held_searched = 0, held_rtn = 0, held_plain = 0;  // plain: GPTQ d on fit + val
  QuantizedLinear plain;
};

Searched search(const Linear& L, const QuantizeSettings& s) {
  Hessian fit(L.k), val(L.k), held(L.k);
  fit.add(L.fit.data(), L.t_fit, 2);
  val.add(L.val.data(), L.t_val, 2);
  held.add(L.held.data(), L.t_held, 2);
  Hessian full = fit;
  REQUIRE(full.add_sum(val).ok());
  auto r = quantize_damp_searched(L.w.data(), L.n, L.k, fit, val, full, s);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  auto plain = quantize_gptq(L.w.data(), L.n, L.k, full, s);
  REQUIRE(plain.ok());
  auto rtn = rtn_dequantized(L.w.data(), L.n, L.k, s);
  REQUIRE(rtn.ok());
  const std::vector<float> dq = dequantize_linear(r->q, 2), dp = dequantize_linear(*plain, 2);
  const auto e =
      weight_error_forms(held, L.w.data(), {dq.data(), rtn->data(), dp.data()}, L.n, L.k, 2);
  Searched out{*r, e[0], e[1], e[2], *plain};
  const auto& c = r->choice;
  MESSAGE("choice " << std::string(kDampCandidateList[size_t(c.candidate)].name)
                    << " (validation: RTN " << c.val_err[0] << ", d " << c.val_err[1] << ", 10d "
                    << c.val_err[2] << ", 100d " << c.val_err[3] << "); held-out: searched " << e[0]
                    << ", RTN " << e[1] << ", plain GPTQ " << e[2]);
  return out;
}

QuantizeSettings settings(bool act_order) {
  QuantizeSettings s;
  s.group_size = 32;
  s.act_order = act_order;
  s.threads = 2;
  return s;
}

}  // namespace

TEST_CASE("damp search (a): rank-deficient fit data -> RTN or more damping, <= RTN held out") {
  for (bool act : {false, true}) {
    CAPTURE(act);
    const Linear L = make_linear(5, 256, 0.3f, 150, 80, 3000);
    const QuantizeSettings s = settings(act);
    const Searched r = search(L, s);
    // The scenario: plain GPTQ overfits its 230 calibration tokens and loses to RTN.
    REQUIRE(r.held_plain > 1.05 * r.held_rtn);
    // The search does not pick the plain candidate and ships something no worse than RTN.
    CHECK(r.s.choice.candidate != 1);
    CHECK(r.held_searched <= r.held_rtn);
    // RTN shipped means RTN's weights (in the final column order: fused linears share g_idx).
    if (r.s.choice.rtn()) {
      CHECK(r.s.choice.damp == 0);
      if (!act) {
        auto rtn = quantize_rtn(L.w.data(), L.n, L.k, s);
        REQUIRE(rtn.ok());
        CHECK(r.s.q.codes == rtn->codes);
        CHECK(r.s.q.scales == rtn->scales);
        CHECK(r.s.q.zeros == rtn->zeros);
      }
    } else {
      CHECK(r.s.choice.damp ==
            doctest::Approx(s.damp_percent *
                            kDampCandidateList[size_t(r.s.choice.candidate)].factor));
    }
    CHECK(r.s.q.g_idx == r.plain.g_idx);
  }
}

TEST_CASE("damp search (b): plentiful correlated data -> GPTQ with d, clearly below RTN") {
  for (bool act : {false, true}) {
    CAPTURE(act);
    const Linear L = make_linear(9, 32, 0.05f, 4000, 1000, 2000);
    const QuantizeSettings s = settings(act);
    const Searched r = search(L, s);
    CHECK(r.s.choice.candidate == 1);
    CHECK(r.s.choice.damp == doctest::Approx(s.damp_percent));
    CHECK(r.held_searched <= 0.7 * r.held_rtn);
    // With d the result is plain GPTQ on fit + validation, bit for bit.
    CHECK(r.s.q.codes == r.plain.codes);
    CHECK(r.s.q.scales == r.plain.scales);
    CHECK(r.s.q.zeros == r.plain.zeros);
    CHECK(r.s.q.g_idx == r.plain.g_idx);
  }
}

TEST_CASE("damp search: validation errors are the candidates' forms on H_val") {
  const Linear L = make_linear(13, 32, 0.3f, 600, 200, 10);
  const QuantizeSettings s = settings(false);
  Hessian fit(L.k), val(L.k);
  fit.add(L.fit.data(), L.t_fit, 2);
  val.add(L.val.data(), L.t_val, 2);
  Hessian full = fit;
  REQUIRE(full.add_sum(val).ok());
  CHECK(full.tokens() == 800);
  auto r = quantize_damp_searched(L.w.data(), L.n, L.k, fit, val, full, s);
  REQUIRE(r.ok());
  std::vector<std::vector<float>> deq;
  deq.push_back(*rtn_dequantized(L.w.data(), L.n, L.k, s));
  for (double f : {1.0, 10.0, 100.0}) {
    QuantizeSettings sc = s;
    sc.damp_percent = 0.01 * f;
    auto q = quantize_gptq(L.w.data(), L.n, L.k, fit, sc);
    REQUIRE(q.ok());
    deq.push_back(dequantize_linear(*q, 2));
  }
  for (int c = 0; c < kDampCandidates; ++c) {
    CAPTURE(c);
    // Directly: sum over validation tokens and outputs of (x (W - Q)^T)^2.
    double direct = 0;
    for (int64_t t = 0; t < L.t_val; ++t)
      for (int64_t o = 0; o < L.n; ++o) {
        double y = 0;
        for (int64_t i = 0; i < L.k; ++i)
          y += double(L.val[size_t(t * L.k + i)]) *
               (double(L.w[size_t(o * L.k + i)]) - double(deq[size_t(c)][size_t(o * L.k + i)]));
        direct += y * y;
      }
    CHECK(r->choice.val_err[size_t(c)] == doctest::Approx(direct).epsilon(1e-9));
  }
}

namespace {

// The tiny model's layer 0 q/k/v input: RMSNorm of the calibration tokens' embeddings.
std::vector<float> layer0_input(const ModelConfig& c, const Checkpoint& ck,
                                const std::vector<std::vector<int32_t>>& seqs) {
  auto x = embed_calibration(c, ck, seqs);
  REQUIRE(x.ok());
  auto ln = load_tensor_f32(ck, names::layer(0, names::kInputNorm), c.hidden_size);
  REQUIRE(ln.ok());
  const int64_t H = c.hidden_size, T = int64_t(x->size()) / H;
  std::vector<float> out(x->size());
  for (int64_t t = 0; t < T; ++t)
    cpu::rms_norm(&(*x)[size_t(t * H)], ln->data(), H, c.rms_norm_eps, &out[size_t(t * H)]);
  return out;
}

}  // namespace

TEST_CASE(
    "damp search: quantize_model uses the split it says; without it, plain GPTQ bit for bit") {
  const std::string ckpt = testing::tiny_checkpoint();
  auto config = read_hf_config(ckpt);
  auto ck = Checkpoint::open(ckpt);
  REQUIRE(config.ok());
  REQUIRE(ck.ok());
  auto tok = Tokenizer::from_hf_dir(ckpt);
  REQUIRE(tok.ok());
  std::vector<int32_t> ids = tok->encode(builtin_calibration_text(), false);
  // Sequences of 512 and a shorter last one: validation blocks inside every sequence.
  const auto seqs = split_calibration(ids, 512);
  REQUIRE(seqs.size() >= 3);
  const auto dir = testing::scratch_dir("damp_search_model");
  const int64_t H = config->hidden_size, hd = config->head_dim;
  const int64_t qd = config->num_attention_heads * hd, kvd = config->num_key_value_heads * hd;
  const std::vector<float> x = layer0_input(*config, *ck, seqs);
  const int64_t T = int64_t(x.size()) / H;
  for (bool search_on : {false, true}) {
    CAPTURE(search_on);
    ModelQuantizeOptions o;
    o.settings.threads = 2;
    o.calibration = seqs;
    o.damp_search = search_on;
    std::vector<DampChoice> choices;
    o.damp_choices = &choices;
    o.out_dir = (dir / (search_on ? "search" : "plain")).string();
    auto cfg = quantize_model(*config, *ck, o);
    REQUIRE_MESSAGE(cfg.ok(), cfg.status().message());
    auto out = Checkpoint::open(o.out_dir);
    REQUIRE(out.ok());
    // What layer 0's q/k/v must be, from the Hessians built here.
    Hessian all(H), fit(H), val(H);
    all.add(x.data(), T, 2);
    const DampSearchPlan plan = plan_damp_search(seqs, true);
    REQUIRE(plan.enabled);
    REQUIRE(int64_t(plan.val_mask.size()) == T);
    for (int64_t t = 0; t < T; ++t)
      (plan.val_mask[size_t(t)] ? val : fit).add(&x[size_t(t * H)], 1, 1);
    Hessian full = fit;
    REQUIRE(full.add_sum(val).ok());
    CHECK(val.tokens() == plan.val_tokens);
    CHECK(choices.size() == (search_on ? size_t(config->num_hidden_layers) * 7 : 0));
    for (auto [name, n] : {std::pair{"self_attn.q_proj", qd},
                           {"self_attn.k_proj", kvd},
                           {"self_attn.v_proj", kvd}}) {
      const std::string base = names::layer(0, name);
      CAPTURE(base);
      auto w = load_tensor_f32(*ck, base + ".weight", n * H);
      REQUIRE(w.ok());
      auto got = read_gptq_linear(*out, base, *cfg, n, H);
      REQUIRE_MESSAGE(got.ok(), got.status().message());
      QuantizedLinear want;
      if (search_on) {
        auto r = quantize_damp_searched(w->data(), n, H, fit, val, full, o.settings);
        REQUIRE(r.ok());
        want = r->q;
        const auto it = std::find_if(choices.begin(), choices.end(), [&](const DampChoice& c) {
          return c.layer == 0 && c.linear == linear_short_name(base);
        });
        REQUIRE(it != choices.end());
        CHECK(it->candidate == r->choice.candidate);
        CHECK(it->val_err == r->choice.val_err);
      } else {
        auto r = quantize_gptq(w->data(), n, H, all, o.settings);
        REQUIRE(r.ok());
        want = *r;
      }
      CHECK(got->codes == want.codes);
      CHECK(got->scales == want.scales);
      CHECK(got->zeros == want.zeros);
      CHECK(got->g_idx == want.g_idx);
    }
  }
}

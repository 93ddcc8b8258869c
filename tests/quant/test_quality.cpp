// GPTQ against round-to-nearest on one layer: with correlated, unevenly scaled input
// features (as real activations are), GPTQ's per-layer output error on held-out activations
// must not exceed RTN's, for several group sizes, with and without act-order. Also the
// pieces of --quality-report that do not need a model: the error through the held-out
// Hessian against the direct sum over tokens, and the held-out split.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "compiler/gptq/quality_report.h"
#include "compiler/gptq/quantizer.h"
#include "core/half.h"

using namespace qw;
using namespace qw::gptq;

namespace {

struct Data {
  int64_t n = 96, k = 256;
  std::vector<float> w, x_calib, x_held;
  int64_t t_calib = 2048, t_held = 1024;
};

// x = (z A) * d: a random mixing A correlates the features, d spreads their scales (a few
// "outlier" channels, as LLM activations have).
Data make_data(uint32_t seed) {
  Data d;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  d.w.resize(size_t(d.n * d.k));
  for (auto& v : d.w) v = nd(rng) * 0.05f;
  const int64_t r = 64;  // latent dimension: activations live near a subspace
  std::vector<float> a(size_t(r * d.k)), scale(size_t(d.k));
  for (auto& v : a) v = nd(rng);
  for (int64_t c = 0; c < d.k; ++c) scale[size_t(c)] = (c % 17 == 0 ? 8.0f : 1.0f) * (0.2f + float(rng() % 100) / 50.0f);
  auto gen = [&](int64_t t, std::vector<float>& x) {
    x.assign(size_t(t * d.k), 0.0f);
    std::vector<float> z(static_cast<size_t>(r));
    for (int64_t i = 0; i < t; ++i) {
      for (auto& v : z) v = nd(rng);
      for (int64_t c = 0; c < d.k; ++c) {
        float s = 0.1f * nd(rng);
        for (int64_t j = 0; j < r; ++j) s += z[size_t(j)] * a[size_t(j * d.k + c)];
        x[size_t(i * d.k + c)] = s * scale[size_t(c)] / 8.0f;
      }
    }
  };
  gen(d.t_calib, d.x_calib);
  gen(d.t_held, d.x_held);
  return d;
}

// sum over tokens and outputs of (x (W - Q)^T)^2
double output_error(const Data& d, const QuantizedLinear& q, const std::vector<float>& x, int64_t t) {
  double err = 0;
  for (int64_t n = 0; n < d.n; ++n) {
    std::vector<double> diff(size_t(d.k));
    for (int64_t c = 0; c < d.k; ++c) diff[size_t(c)] = double(d.w[size_t(n * d.k + c)]) - q.value(n, c);
    for (int64_t i = 0; i < t; ++i) {
      double s = 0;
      for (int64_t c = 0; c < d.k; ++c) s += double(x[size_t(i * d.k + c)]) * diff[size_t(c)];
      err += s * s;
    }
  }
  return err;
}

}  // namespace

TEST_CASE("GPTQ output error <= RTN on held-out activations") {
  const Data d = make_data(42);
  Hessian h(d.k);
  h.add(d.x_calib.data(), d.t_calib, 2);
  for (int gs : {32, 128, -1})
    for (bool act : {false, true})
      for (bool sym : {true, false}) {
        QuantizeSettings s;
        s.group_size = gs;
        s.act_order = act;
        s.sym = sym;
        s.threads = 2;
        auto rtn = quantize_rtn(d.w.data(), d.n, d.k, s);
        auto gq = quantize_gptq(d.w.data(), d.n, d.k, h, s);
        REQUIRE(rtn.ok());
        REQUIRE_MESSAGE(gq.ok(), gq.status().message());
        const double e_rtn = output_error(d, *rtn, d.x_held, d.t_held);
        const double e_gptq = output_error(d, *gq, d.x_held, d.t_held);
        MESSAGE("group " << gs << std::string(act ? " act-order" : "") << std::string(sym ? " sym" : " asym")
                         << ": held-out error RTN " << e_rtn << ", GPTQ " << e_gptq
                         << " (ratio " << e_gptq / e_rtn << ")");
        CHECK(e_gptq <= e_rtn);
        // Act-order's g_idx is a valid grouping: every group has group_size members.
        std::vector<int> count(size_t(gq->groups()), 0);
        for (int32_t g : gq->g_idx) ++count[size_t(g)];
        for (int c : count) CHECK(c == gq->group_size);
      }
}

TEST_CASE("RTN: codes, scales and zero points as AutoGPTQ defines them") {
  // One row, one group of 8: max |w| = 0.75 -> symmetric scale 1.5 / 15 = 0.1, zero 8.
  const std::vector<float> w = {0.75f, -0.3f, 0.0f, 0.1f, -0.75f, 0.26f, 0.04f, -0.05f};
  std::vector<float> wm(8 * 8, 0.0f);
  std::copy(w.begin(), w.end(), wm.begin());
  QuantizeSettings s;
  s.group_size = -1;
  auto q = quantize_rtn(wm.data(), 8, 8, s);
  REQUIRE(q.ok());
  CHECK(q->zeros[0] == 8);
  // The scale is rounded to fp16 first and the codes use the rounded value.
  CHECK(q->scales[0] == f32_to_f16(1.5f / 15.0f));
  const float sc = f16_to_f32(q->scales[0]);
  for (int c = 0; c < 8; ++c) {
    // code = clamp(round(w / s) + 8, 0, 15): 0.75 / 0.1 = 7.5 -> 16, clamped to 15.
    const int want = std::clamp(int(std::nearbyint(w[size_t(c)] / sc)) + 8, 0, 15);
    CHECK(int(q->code(c, 0)) == want);
    CHECK(q->value(0, c) == sc * float(want - 8));
  }
  CHECK(q->code(0, 0) == 15);
}

TEST_CASE("held-out error through H_h equals the direct sum over tokens") {
  // n != k and a non-symmetric W, so a transposed D (or reading H's empty upper triangle)
  // gives another number; zeros in x exercise Hessian::add's skip of inactive inputs.
  const int64_t n = 24, k = 40, t = 57;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(size_t(n * k)), qg(w.size()), qr(w.size()), x(size_t(t * k));
  for (size_t i = 0; i < w.size(); ++i) {
    w[i] = nd(rng) * (1.0f + float(i % 7));
    qg[i] = w[i] + 0.05f * nd(rng);
    qr[i] = w[i] + 0.08f * nd(rng);
  }
  for (size_t i = 0; i < x.size(); ++i) x[i] = (i % 11 == 3) ? 0.0f : nd(rng) * float(1 + i % 5);
  Hessian h(k);
  h.add(x.data(), t, 3);
  // sum over tokens and output rows of (x (W - Q)^T)^2, straight from the definition.
  auto direct = [&](const std::vector<float>* q) {
    double err = 0;
    for (int64_t i = 0; i < t; ++i)
      for (int64_t r = 0; r < n; ++r) {
        double y = 0;
        for (int64_t c = 0; c < k; ++c) {
          const double wv = w[size_t(r * k + c)];
          y += double(x[size_t(i * k + c)]) * (q ? wv - double((*q)[size_t(r * k + c)]) : wv);
        }
        err += y * y;
      }
    return err;
  };
  const HeldoutErrors e = heldout_errors(h, w.data(), qg.data(), qr.data(), n, k, 3);
  CHECK(e.gptq == doctest::Approx(direct(&qg)).epsilon(1e-10));
  CHECK(e.rtn == doctest::Approx(direct(&qr)).epsilon(1e-10));
  CHECK(e.reference == doctest::Approx(direct(nullptr)).epsilon(1e-10));
  CHECK(e.gptq > 0);
  CHECK(e.rtn > e.gptq);  // the larger perturbation
  // The thread count does not change a bit.
  for (unsigned th : {1u, 2u, 5u}) {
    const HeldoutErrors f = heldout_errors(h, w.data(), qg.data(), qr.data(), n, k, th);
    CHECK(f.gptq == e.gptq);
    CHECK(f.rtn == e.rtn);
    CHECK(f.reference == e.reference);
  }
  // RTN's dequantized weight is quantize_rtn's values.
  QuantizeSettings s;
  s.group_size = 8;
  s.threads = 2;
  auto q = quantize_rtn(w.data(), n, k, s);
  auto d = rtn_dequantized(w.data(), n, k, s);
  REQUIRE(q.ok());
  REQUIRE(d.ok());
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) CHECK((*d)[size_t(r * k + c)] == q->value(r, c));
}

TEST_CASE("held-out split: every 5th sequence from the last, in order") {
  auto seqs = [](int count) {
    std::vector<std::vector<int32_t>> s;
    for (int i = 0; i < count; ++i) s.push_back({i, i});
    return s;
  };
  auto firsts = [](const std::vector<std::vector<int32_t>>& v) {
    std::vector<int32_t> f;
    for (const auto& s : v) f.push_back(s[0]);
    return f;
  };
  CHECK(!split_heldout(seqs(0)).ok());
  auto one = split_heldout(seqs(1));
  REQUIRE(!one.ok());
  CHECK(one.status().message().find("--quality-report") != std::string::npos);
  auto two = split_heldout(seqs(2));
  REQUIRE(two.ok());
  CHECK(firsts(two->calibration) == std::vector<int32_t>{0});
  CHECK(firsts(two->heldout) == std::vector<int32_t>{1});
  auto four = split_heldout(seqs(4));
  REQUIRE(four.ok());
  CHECK(firsts(four->calibration) == std::vector<int32_t>{0, 1, 2});
  CHECK(firsts(four->heldout) == std::vector<int32_t>{3});
  auto twelve = split_heldout(seqs(12));
  REQUIRE(twelve.ok());
  CHECK(firsts(twelve->heldout) == std::vector<int32_t>{1, 6, 11});
  CHECK(twelve->calibration.size() == 9);
}

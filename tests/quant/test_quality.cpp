// GPTQ against round-to-nearest on one layer: with correlated, unevenly scaled input
// features (as real activations are), GPTQ's per-layer output error on held-out activations
// must not exceed RTN's, for several group sizes, with and without act-order.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

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

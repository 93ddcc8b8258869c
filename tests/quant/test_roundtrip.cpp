// qwc compile --dtype int4-gptq of the tiny FP16/BF16 model -> artifact -> dequantize:
// RTN artifacts equal an independent round-to-nearest of the source weights bit for bit (on
// every rank's fused/split tensors); a GPTQ compile on the built-in calibration text stays
// close to the source weights and keeps lm_head and embeddings in fp16.
#include <algorithm>
#include <cmath>
#include <map>

#include "compiler/safetensors_reader.h"
#include "core/half.h"
#include "quant_test_support.h"

using namespace qw;

namespace {

struct Source {
  int64_t n = 0, k = 0;
  std::vector<float> w;
};

Source load(const Checkpoint& ck, const std::string& base) {
  auto t = ck.find(base + ".weight");
  REQUIRE(t.ok());
  Source s;
  s.n = (*t)->shape[0], s.k = (*t)->shape[1];
  s.w.resize(size_t(s.n * s.k));
  for (int64_t i = 0; i < s.n * s.k; ++i) {
    uint16_t h;
    std::memcpy(&h, (*t)->data + 2 * i, 2);
    s.w[size_t(i)] = bf16_to_f32(h);  // the test model is bf16
  }
  return s;
}

// Symmetric 4-bit RTN of W[r, c] with groups of `gs` along the input dimension.
float rtn_value(const Source& s, int64_t r, int64_t c, int64_t gs) {
  const int64_t g0 = c / gs * gs;
  float xmax = 0;
  for (int64_t j = g0; j < g0 + gs; ++j) xmax = std::max(xmax, std::fabs(s.w[size_t(r * s.k + j)]));
  const float scale = xmax == 0 ? 2.0f / 15.0f : 2.0f * xmax / 15.0f;
  const float sc = f16_to_f32(f32_to_f16(scale));
  const int code = std::clamp(int(std::nearbyint(s.w[size_t(r * s.k + c)] / sc)) + 8, 0, 15);
  return sc * float(code - 8);
}

void check_rtn(int tp, int gs) {
  const auto dir = testing::scratch_dir("rtn_tp" + std::to_string(tp) + "_g" + std::to_string(gs));
  testing::Int4Compile c;
  c.tp = tp;
  c.rtn = true;
  c.group_size = gs;
  const std::string out = (dir / "m.qwart").string();
  auto rep = testing::compile_int4(testing::tiny_checkpoint(), out, c);
  REQUIRE_MESSAGE(rep.ok(), rep.status().message());
  REQUIRE(verify_artifact(out).ok());
  auto a = Artifact::open(out);
  REQUIRE(a.ok());
  CHECK(a->weight_dtype() == DType::F16);
  auto ck = Checkpoint::open(testing::tiny_checkpoint());
  REQUIRE(ck.ok());
  std::map<std::string, Source> src;
  int64_t checked = 0, mismatches = 0;
  testing::for_each_int4_element(*a, [&](const std::string& base, int64_t r, int64_t col, float got) {
    auto it = src.find(base);
    if (it == src.end()) it = src.emplace(base, load(*ck, base)).first;
    const float want = rtn_value(it->second, r, col, gs == -1 ? it->second.k : gs);
    ++checked;
    if (got != want) ++mismatches;
  });
  CHECK(mismatches == 0);
  CHECK(checked >= 2 * (2 * 128 * 128 + 2 * 64 * 128 + 3 * 128 * 384));
  // Embeddings and lm_head stay fp16.
  for (int r = 0; r < tp; ++r) {
    auto e = a->tensor(names::kEmbed, r);
    REQUIRE(e.ok());
    CHECK(e->dtype == DType::F16);
    CHECK(!quant::is_quantized(*a, names::kLmHead, r));
  }
}

}  // namespace

TEST_CASE("RTN round trip tp 1, group 128") { check_rtn(1, 128); }
TEST_CASE("RTN round trip tp 2, group 32") { check_rtn(2, 32); }
TEST_CASE("RTN round trip tp 2, group -1") { check_rtn(2, -1); }

TEST_CASE("GPTQ on the built-in calibration text, act-order, tp 1 then reproducible") {
  const auto dir = testing::scratch_dir("gptq_builtin");
  testing::Int4Compile c;
  c.calib_builtin = true;
  c.act_order = true;
  c.group_size = 32;
  const std::string out = (dir / "m.qwart").string();
  auto rep = testing::compile_int4(testing::tiny_checkpoint(), out, c);
  REQUIRE_MESSAGE(rep.ok(), rep.status().message());
  REQUIRE(verify_artifact(out).ok());
  auto a = Artifact::open(out);
  REQUIRE(a.ok());
  auto ck = Checkpoint::open(testing::tiny_checkpoint());
  REQUIRE(ck.ok());
  std::map<std::string, Source> src;
  std::map<std::string, std::pair<double, double>> err;  // base -> (|W - Q|^2, |W|^2)
  testing::for_each_int4_element(*a, [&](const std::string& base, int64_t r, int64_t col, float got) {
    auto it = src.find(base);
    if (it == src.end()) it = src.emplace(base, load(*ck, base)).first;
    const double w = it->second.w[size_t(r * it->second.k + col)];
    err[base].first += (w - got) * (w - got);
    err[base].second += w * w;
  });
  for (const auto& [base, e] : err) {
    const double rel = std::sqrt(e.first / e.second);
    CHECK_MESSAGE(rel < 0.2, base << " relative weight error " << rel);
  }
  CHECK(a->metadata().provenance()->command_line()->str().find("--calib-builtin") != std::string::npos);
  // Same inputs, same bytes: GPTQ is deterministic whatever the thread count.
  const std::string out2 = (dir / "m2.qwart").string();
  REQUIRE(testing::compile_int4(testing::tiny_checkpoint(), out2, c).ok());
  auto b = Artifact::open(out2);
  REQUIRE(b.ok());
  CHECK(a->file().size() == b->file().size());
  CHECK(std::memcmp(a->file().data(), b->file().data(), a->file().size()) == 0);
}

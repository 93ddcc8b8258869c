// Compile tiny -> read the artifact -> every HF tensor reassembled from the (fused, TP-split)
// artifact tensors equals the source after dtype conversion.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "artifact/artifact.h"
#include "artifact/tensor_names.h"
#include "compiler/safetensors_reader.h"
#include "core/half.h"
#include "test_support.h"

using namespace qw;

namespace {

uint16_t expected_bits(const SafetensorInfo& t, int64_t i, DType to) {
  uint16_t h;
  std::memcpy(&h, t.data + 2 * i, 2);
  const float f = bf16_to_f32(h);  // the test model is bf16
  return to == DType::F16 ? f32_to_f16(f) : f32_to_bf16(f);
}

uint16_t artifact_bits(const TensorView& v, int64_t row, int64_t col) {
  uint16_t h;
  std::memcpy(&h, v.data + 2 * (row * v.cols() + col), 2);
  return h;
}

// Element (row, col) of HF tensor `hf` as stored in the artifact for `rank`, or false if that
// rank does not hold it.
struct Locator {
  const Artifact& a;
  const ModelConfig& c;
  const TpPlan& p;

  bool find(const std::string& hf, int64_t row, int64_t col, int rank, uint16_t& out) const {
    const int64_t hd = c.head_dim;
    const int64_t qn = p.q_heads_per_rank * hd, kvn = p.kv_heads_per_rank * hd;
    auto layer_of = [&](std::string& suffix) -> int64_t {
      if (hf.rfind("model.layers.", 0) != 0) return -1;
      const size_t dot = hf.find('.', 13);
      suffix = hf.substr(dot + 1);
      return std::stoll(hf.substr(13, dot - 13));
    };
    std::string sfx;
    const int64_t l = layer_of(sfx);
    auto get = [&](const std::string& name, int64_t r, int64_t cc) {
      auto v = a.tensor(name, rank);
      REQUIRE(v.ok());
      out = artifact_bits(*v, r, cc);
      return true;
    };
    if (l < 0) {
      if (hf == names::kLmHead) {
        const int64_t v0 = rank * p.vocab_per_rank;
        if (row < v0 || row >= v0 + p.vocab_per_rank) return false;
        return get(names::kLmHead, row - v0, col);
      }
      return get(hf, row, col);
    }
    const std::string qkv = names::layer(l, names::kQkvWeight), qkvb = names::layer(l, names::kQkvBias);
    const bool is_bias = sfx.find(".bias") != std::string::npos;
    const int64_t q0 = p.q_head_begin(rank) * hd, kv0 = p.kv_head_begin(rank) * hd;
    const int64_t i0 = rank * p.intermediate_per_rank, in = p.intermediate_per_rank;
    const std::string& fused = is_bias ? qkvb : qkv;
    if (sfx.rfind("self_attn.q_proj", 0) == 0) {
      if (row < q0 || row >= q0 + qn) return false;
      return get(fused, row - q0, col);
    }
    if (sfx.rfind("self_attn.k_proj", 0) == 0) {
      if (row < kv0 || row >= kv0 + kvn) return false;
      return get(fused, qn + row - kv0, col);
    }
    if (sfx.rfind("self_attn.v_proj", 0) == 0) {
      if (row < kv0 || row >= kv0 + kvn) return false;
      return get(fused, qn + kvn + row - kv0, col);
    }
    if (sfx == "self_attn.o_proj.weight") {
      if (col < q0 || col >= q0 + qn) return false;
      return get(names::layer(l, names::kOProj), row, col - q0);
    }
    if (sfx == "mlp.gate_proj.weight" || sfx == "mlp.up_proj.weight") {
      if (row < i0 || row >= i0 + in) return false;
      return get(names::layer(l, names::kGateUp), (sfx[4] == 'g' ? 0 : in) + row - i0, col);
    }
    if (sfx == "mlp.down_proj.weight") {
      if (col < i0 || col >= i0 + in) return false;
      return get(names::layer(l, names::kDown), row, col - i0);
    }
    return get(hf, row, col);  // norms: replicated
  }
};

void check_roundtrip(int tp, DType dtype, bool tied) {
  const std::string& ckpt_dir = testing::tiny_checkpoint(tied);
  const auto out = testing::scratch_dir("rt_tp" + std::to_string(tp) + (tied ? "_tied" : "")) / "m.qwart";
  auto rep = testing::compile_to(ckpt_dir, out.string(), tp, dtype);
  REQUIRE_MESSAGE(rep.ok(), rep.status().message());
  auto a = Artifact::open(out.string(), {true});
  REQUIRE_MESSAGE(a.ok(), a.status().message());
  CHECK(a->tp_size() == tp);
  CHECK(a->weight_dtype() == dtype);
  auto ck = Checkpoint::open(ckpt_dir);
  REQUIRE(ck.ok());
  Locator loc{*a, a->config(), a->tp_plan()};
  int64_t checked = 0, mismatches = 0;
  for (const auto& [name, t] : ck->tensors()) {
    const int64_t rows = t.shape[0], cols = t.shape.size() > 1 ? t.shape[1] : 1;
    // Every element of small tensors; a stride through the embedding/lm_head.
    const int64_t stride = rows * cols > (1 << 20) ? 997 : 1;
    for (int64_t i = 0; i < rows * cols; i += stride) {
      const int64_t r = i / cols, c = i % cols;
      int holders = 0;
      for (int rank = 0; rank < tp; ++rank) {
        uint16_t got;
        if (!loc.find(name, r, c, rank, got)) continue;
        ++holders;
        ++checked;
        if (got != expected_bits(t, i, dtype)) ++mismatches;
      }
      if (name == names::kEmbed) CHECK(holders == tp);  // replicated on every rank
      else if (holders < 1) FAIL("element of " << name << " held by no rank");
    }
    if (tied && name == names::kEmbed && tp > 1) {  // lm_head rows come from the embedding
      for (int64_t r = 0; r < rows; r += 4099) {
        uint16_t got;
        const int rank = int(r / a->tp_plan().vocab_per_rank);
        REQUIRE(loc.find(names::kLmHead, r, 5, rank, got));
        CHECK(got == expected_bits(t, r * cols + 5, dtype));
      }
    }
  }
  CHECK(mismatches == 0);
  CHECK(checked > 100000);
  CHECK(a->has_tensor(names::kLmHead, 0) == !(tied && tp == 1));
}

}  // namespace

TEST_CASE("round trip tp=1 fp16") { check_roundtrip(1, DType::F16, false); }
TEST_CASE("round trip tp=2 fp16") { check_roundtrip(2, DType::F16, false); }
TEST_CASE("round trip tp=4 fp16 (KV heads replicated)") { check_roundtrip(4, DType::F16, false); }
TEST_CASE("round trip tp=1 bf16") { check_roundtrip(1, DType::BF16, false); }
TEST_CASE("round trip tied embeddings tp=1 and tp=2") {
  check_roundtrip(1, DType::F16, true);
  check_roundtrip(2, DType::F16, true);
}

TEST_CASE("reproducible: two compiles give the same bytes") {
  const std::string& ckpt = testing::tiny_checkpoint();
  const auto d = testing::scratch_dir("repro");
  REQUIRE(testing::compile_to(ckpt, (d / "a.qwart").string(), 2).ok());
  REQUIRE(testing::compile_to(ckpt, (d / "b.qwart").string(), 2).ok());
  std::ifstream fa(d / "a.qwart", std::ios::binary), fb(d / "b.qwart", std::ios::binary);
  std::string sa((std::istreambuf_iterator<char>(fa)), {}), sb((std::istreambuf_iterator<char>(fb)), {});
  CHECK(sa.size() > 1000000);
  CHECK(sa == sb);
}

TEST_CASE("sections are aligned and each rank's weights are one contiguous section") {
  const auto d = testing::scratch_dir("align");
  REQUIRE(testing::compile_to(testing::tiny_checkpoint(), (d / "m.qwart").string(), 4).ok());
  auto a = Artifact::open((d / "m.qwart").string());
  REQUIRE(a.ok());
  for (int r = 0; r < 4; ++r) {
    auto s = a->weights_section(r);
    REQUIRE(s.ok());
    CHECK(s->offset % kSectionAlignment == 0);
  }
  const auto sections = a->sections();
  for (const auto& t : a->tensors()) {
    CHECK(t.offset_in_section % kTensorAlignment == 0);
    CHECK(sections[t.section].kind == fb::SectionKind::Weights);
    CHECK(sections[t.section].tp_rank == t.tp_rank);
  }
}

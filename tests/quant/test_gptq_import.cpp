// GPTQ checkpoints built from known integer weights in the exact AutoGPTQ ("gptq", zero - 1
// stored) and GPTQModel ("gptq_v2") formats, with and without act-order, compiled into INT4
// artifacts: every dequantized element must equal scale * (code - zero) bit for bit. The
// qweight/qzeros packing here is written out independently of the compiler's reader.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "compiler/gptq/quant_config.h"
#include "compiler/gptq/safetensors_writer.h"
#include "compiler/safetensors_reader.h"
#include "core/half.h"
#include "quant_test_support.h"

using namespace qw;
namespace fs = std::filesystem;

namespace {

enum class Act { kNone, kRankLocal, kGlobal };

struct Variant {
  bool v2 = false;
  bool sym = true;
  int group_size = 128;
  Act act = Act::kNone;
  bool quantize_config_file = false;  // AutoGPTQ's quantize_config.json instead of config.json
};

struct Truth {
  int64_t n = 0, k = 0, gs = 0;
  std::vector<uint8_t> codes, zeros;  // [k][n], [G][n]
  std::vector<uint16_t> scales;       // [G][n]
  std::vector<int32_t> g_idx;         // [k]
  float value(int64_t row, int64_t col) const {
    const int64_t g = g_idx[size_t(col)];
    return f16_to_f32(scales[size_t(g * n + row)]) *
           float(int(codes[size_t(col * n + row)]) - int(zeros[size_t(g * n + row)]));
  }
};

std::vector<int32_t> make_g_idx(int64_t k, int64_t gs, Act act, std::mt19937& rng) {
  std::vector<int32_t> g(static_cast<size_t>(k));
  if (gs == k || act == Act::kNone) {
    for (int64_t i = 0; i < k; ++i) g[size_t(i)] = int32_t(i / gs);
    return g;
  }
  // desc_act: the quantization order is a permutation; g_idx[perm[i]] = i / gs. kRankLocal
  // keeps each half's features within that half, so --tp 2 row-parallel slices hold whole groups.
  const int64_t block = act == Act::kRankLocal ? k / 2 : k;
  for (int64_t b = 0; b < k; b += block) {
    std::vector<int64_t> perm(static_cast<size_t>(block));
    std::iota(perm.begin(), perm.end(), b);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t i = 0; i < block; ++i) g[size_t(perm[size_t(i)])] = int32_t((b + i) / gs);
  }
  return g;
}

Truth make_truth(int64_t n, int64_t k, const Variant& v, const std::vector<int32_t>& g_idx,
                 std::mt19937& rng) {
  Truth t;
  t.n = n, t.k = k, t.gs = v.group_size == -1 ? k : v.group_size;
  const int64_t G = k / t.gs;
  t.codes.resize(size_t(k * n));
  for (auto& c : t.codes) c = uint8_t(rng() & 0xf);
  t.scales.resize(size_t(G * n));
  for (auto& s : t.scales) s = f32_to_f16(float(rng() % 3000 + 10) * 1e-5f);
  t.zeros.resize(size_t(G * n));
  for (auto& z : t.zeros)
    z = v.sym ? 8 : v.v2 ? uint8_t(rng() % 16) : uint8_t(rng() % 16 + 1);  // v1: 1..16
  t.g_idx = g_idx;
  return t;
}

void add_gptq(gptq::SafetensorsWriter& w, const std::string& base, const Truth& t, bool v2) {
  const int64_t G = t.k / t.gs;
  std::vector<uint32_t> qweight(size_t(t.k / 8 * t.n), 0), qzeros(size_t(G * t.n / 8), 0);
  for (int64_t k = 0; k < t.k; ++k)
    for (int64_t n = 0; n < t.n; ++n)
      qweight[size_t((k / 8) * t.n + n)] |= uint32_t(t.codes[size_t(k * t.n + n)]) << (4 * (k % 8));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t n = 0; n < t.n; ++n) {
      const uint32_t stored = v2 ? t.zeros[size_t(g * t.n + n)] : t.zeros[size_t(g * t.n + n)] - 1u;
      qzeros[size_t(g * (t.n / 8) + n / 8)] |= (stored & 0xf) << (4 * (n % 8));
    }
  w.add_typed(base + ".qweight", DType::I32, {t.k / 8, t.n}, qweight);
  w.add_typed(base + ".qzeros", DType::I32, {G, t.n / 8}, qzeros);
  w.add_typed(base + ".scales", DType::F16, {G, t.n}, t.scales);
  w.add_typed(base + ".g_idx", DType::I32, {t.k}, t.g_idx);
}

void copy_over(const fs::path& from, const fs::path& to) {
  fs::copy_file(from, to, fs::copy_options::overwrite_existing);
}

// Writes a GPTQ checkpoint of the tiny model; returns the truth of every linear layer.
std::map<std::string, Truth> write_gptq_checkpoint(const std::string& dir, const Variant& v,
                                                   uint32_t seed) {
  const std::string& tiny = testing::tiny_checkpoint();
  fs::create_directories(dir);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    copy_over(fs::path(tiny) / f, fs::path(dir) / f);
  std::ifstream in(fs::path(tiny) / "config.json");
  nlohmann::ordered_json cfg = nlohmann::ordered_json::parse(in);
  nlohmann::ordered_json q = {{"bits", 4}, {"group_size", v.group_size}, {"damp_percent", 0.01},
                              {"desc_act", v.act != Act::kNone}, {"static_groups", false},
                              {"sym", v.sym}, {"true_sequential", true}, {"quant_method", "gptq"}};
  if (v.v2) q["checkpoint_format"] = "gptq_v2";
  if (v.quantize_config_file) {
    std::ofstream(fs::path(dir) / "quantize_config.json") << q.dump(2);
  } else {
    cfg["quantization_config"] = q;
  }
  cfg["torch_dtype"] = "float16";
  std::ofstream(fs::path(dir) / "config.json") << cfg.dump(2);

  auto ck = Checkpoint::open(tiny);
  REQUIRE(ck.ok());
  const int64_t H = cfg["hidden_size"], I = cfg["intermediate_size"];
  const int64_t hd = H / int64_t(cfg["num_attention_heads"]);
  const int64_t qd = hd * int64_t(cfg["num_attention_heads"]), kvd = hd * int64_t(cfg["num_key_value_heads"]);
  gptq::SafetensorsWriter w;
  for (const auto& [name, t] : ck->tensors()) {
    if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0 &&
        name.find("_proj.") != std::string::npos)
      continue;  // the linears are replaced by GPTQ tensors
    w.add(name, t.dtype, t.shape, {t.data, size_t(t.size)});
  }
  std::mt19937 rng(seed);
  std::map<std::string, Truth> truth;
  for (int64_t l = 0; l < int64_t(cfg["num_hidden_layers"]); ++l) {
    auto L = [&](const char* s) { return names::layer(l, s); };
    const int64_t gs_h = v.group_size == -1 ? H : v.group_size;
    const int64_t gs_q = v.group_size == -1 ? qd : v.group_size;
    const int64_t gs_i = v.group_size == -1 ? I : v.group_size;
    // Layers sharing an input share its act-order (AutoGPTQ derives it from that input).
    const auto g_attn = make_g_idx(H, gs_h, v.act, rng), g_o = make_g_idx(qd, gs_q, v.act, rng);
    const auto g_mlp = make_g_idx(H, gs_h, v.act, rng), g_down = make_g_idx(I, gs_i, v.act, rng);
    for (auto [base, n, k, g] : {std::tuple{L("self_attn.q_proj"), qd, H, &g_attn},
                                 {L("self_attn.k_proj"), kvd, H, &g_attn},
                                 {L("self_attn.v_proj"), kvd, H, &g_attn},
                                 {L("self_attn.o_proj"), H, qd, &g_o},
                                 {L("mlp.gate_proj"), I, H, &g_mlp},
                                 {L("mlp.up_proj"), I, H, &g_mlp},
                                 {L("mlp.down_proj"), H, I, &g_down}}) {
      truth[base] = make_truth(n, k, v, *g, rng);
      add_gptq(w, base, truth[base], v.v2);
    }
  }
  REQUIRE(w.write((fs::path(dir) / "model.safetensors").string()).ok());
  return truth;
}

void check_import(const std::string& label, const Variant& v, int tp) {
  const auto dir = testing::scratch_dir("gptq_" + label);
  const auto truth = write_gptq_checkpoint((dir / "ckpt").string(), v, 1234);
  testing::Int4Compile c;
  c.tp = tp;
  const std::string out = (dir / "m.qwart").string();
  auto rep = testing::compile_int4((dir / "ckpt").string(), out, c);
  REQUIRE_MESSAGE(rep.ok(), rep.status().message());
  REQUIRE(verify_artifact(out).ok());
  auto a = Artifact::open(out);
  REQUIRE(a.ok());
  int64_t checked = 0, mismatches = 0;
  testing::for_each_int4_element(*a, [&](const std::string& src, int64_t r, int64_t col, float got) {
    const float want = truth.at(src).value(r, col);
    ++checked;
    if (std::memcmp(&got, &want, 4) != 0) {
      if (mismatches < 5) MESSAGE(src << "[" << r << ", " << col << "]: got " << got << " want " << want);
      ++mismatches;
    }
  });
  CHECK(mismatches == 0);
  // Every weight of the 2 layers, each once per rank that holds it (k/v replicated at tp 4).
  CHECK(checked >= 2 * (2 * 128 * 128 + 2 * 64 * 128 + 3 * 128 * 384));
  // Symmetric imports carry no zeros tensor; act-order ones a permutation.
  const auto m = quant::int4_matrix(*a, names::layer(0, names::kQkvWeight), 0);
  REQUIRE(m.ok());
  CHECK((m->zeros == nullptr) == v.sym);
  CHECK(m->perm.empty() == (v.act == Act::kNone || v.group_size == -1));
}

Status compile_variant(const std::string& label, const Variant& v, int tp) {
  const auto dir = testing::scratch_dir("gptq_" + label);
  write_gptq_checkpoint((dir / "ckpt").string(), v, 99);
  testing::Int4Compile c;
  c.tp = tp;
  return testing::compile_int4((dir / "ckpt").string(), (dir / "m.qwart").string(), c).status();
}

}  // namespace

TEST_CASE("import: gptq (v1) symmetric g128 as Qwen2.5-GPTQ-Int4 ships, tp 1") {
  check_import("v1_sym_g128", {false, true, 128, Act::kNone, false}, 1);
}
TEST_CASE("import: gptq_v2 asymmetric g32 from quantize_config.json, tp 2") {
  check_import("v2_asym_g32", {true, false, 32, Act::kNone, true}, 2);
}
TEST_CASE("import: gptq (v1) asymmetric g64 with zero points up to 16, act-order, tp 1") {
  check_import("v1_asym_g64_act", {false, false, 64, Act::kGlobal, false}, 1);
}
TEST_CASE("import: gptq_v2 symmetric g32 act-order (groups within ranks), tp 2") {
  check_import("v2_sym_g32_act_tp2", {true, true, 32, Act::kRankLocal, false}, 2);
}
TEST_CASE("import: gptq (v1) group_size -1 (one group per row) splits over tp 2") {
  check_import("v1_sym_gm1_tp2", {false, true, -1, Act::kNone, false}, 2);
}
TEST_CASE("import: tp 4 (k/v heads replicated, 96-row qkv padded to 128)") {
  check_import("v2_asym_g32_tp4", {true, false, 32, Act::kNone, false}, 4);
}

TEST_CASE("refused: groups straddling ranks, with the tensor named") {
  Status s = compile_variant("straddle_g128", {false, true, 128, Act::kNone, false}, 2);
  REQUIRE(!s.ok());
  // o_proj's 128 inputs are one group (kept whole per rank); down_proj's 192 per rank are not.
  CHECK(s.message().find("down_proj") != std::string::npos);
  CHECK(s.message().find("straddle") != std::string::npos);
  s = compile_variant("straddle_act", {false, true, 32, Act::kGlobal, false}, 2);
  REQUIRE(!s.ok());
  CHECK(s.message().find("act-order") != std::string::npos);
}

TEST_CASE("refused: unsupported quantization settings name the field") {
  auto bad = [](const char* json, const char* field) {
    auto c = gptq::parse_gptq_config(json, "quantize_config.json");
    REQUIRE(!c.ok());
    CHECK_MESSAGE(c.status().message().find(field) != std::string::npos, c.status().message());
  };
  bad(R"({"bits": 8, "group_size": 128})", "bits");
  bad(R"({"bits": 3, "group_size": 128})", "bits");
  bad(R"({"bits": 4, "group_size": 100})", "group_size");
  bad(R"({"bits": 4, "quant_method": "awq"})", "quant_method");
  bad(R"({"bits": 4, "checkpoint_format": "marlin"})", "checkpoint_format");
  bad(R"({"bits": 4, "format": "gptq_exllama"})", "format");
  bad(R"({"bits": 4, "is_marlin_format": true})", "is_marlin_format");
  bad(R"({"bits": 4, "sym": "yes"})", "sym");
  auto ok = gptq::parse_gptq_config(R"({"bits": 4, "group_size": -1, "desc_act": true,
                                        "checkpoint_format": "gptq_v2"})", "q.json");
  REQUIRE(ok.ok());
  CHECK(ok->format == gptq::CheckpointFormat::kGptqV2);
  CHECK(ok->desc_act);

  // A GPTQ checkpoint needs --dtype int4-gptq.
  const auto dir = testing::scratch_dir("gptq_fp16_refused");
  write_gptq_checkpoint((dir / "ckpt").string(), {false, true, 128, Act::kNone, false}, 5);
  CompileOptions o;
  o.checkpoint_dir = (dir / "ckpt").string();
  o.output = (dir / "m.qwart").string();
  auto r = compile_checkpoint(o);
  REQUIRE(!r.ok());
  CHECK(r.status().message().find("int4-gptq") != std::string::npos);
}

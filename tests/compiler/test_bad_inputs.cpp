// Every bad input gets a clear error that names the file/tensor/field, and no output file.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "artifact/artifact.h"
#include "compiler/hf_config.h"
#include "compiler/safetensors_reader.h"
#include "test_support.h"

using namespace qw;
namespace fs = std::filesystem;

namespace {

std::string make_st(const std::string& header_json, size_t data_bytes) {
  std::string out(8, '\0');
  const uint64_t n = header_json.size();
  std::memcpy(out.data(), &n, 8);
  out += header_json;
  out.append(data_bytes, '\x01');
  return out;
}

Expected<std::vector<SafetensorInfo>> parse(const std::string& file) {
  return SafetensorsFile::parse_header(reinterpret_cast<const uint8_t*>(file.data()), file.size(),
                                       "x.safetensors");
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// A private copy of the tiny checkpoint to break.
fs::path copy_tiny(const std::string& name) {
  auto d = testing::scratch_dir(name) / "ckpt";
  fs::copy(testing::tiny_checkpoint(), d, fs::copy_options::recursive);
  return d;
}

void edit_json(const fs::path& p, const std::function<void(nlohmann::json&)>& f) {
  std::ifstream in(p);
  nlohmann::json j = nlohmann::json::parse(in);
  f(j);
  std::ofstream(p) << j.dump(2);
}

std::string compile_error(const fs::path& ckpt, const fs::path& out, int tp = 1) {
  auto r = testing::compile_to(ckpt.string(), out.string(), tp);
  REQUIRE_FALSE(r.ok());
  CHECK_FALSE(fs::exists(out));  // nothing half-written
  for (const auto& e : fs::directory_iterator(out.parent_path()))
    CHECK_MESSAGE(!contains(e.path().filename().string(), ".tmp."), e.path().string());
  return r.status().message();
}

}  // namespace

TEST_CASE("safetensors header validation") {
  SUBCASE("valid") {
    auto r = parse(make_st(R"({"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}})", 12));
    REQUIRE(r.ok());
    CHECK(r->size() == 1);
    CHECK((*r)[0].shape == std::vector<int64_t>{2, 3});
  }
  SUBCASE("too small") { CHECK(contains(parse("abc").status().message(), "too small")); }
  SUBCASE("header length beyond the file") {
    std::string f = make_st(R"({})", 0);
    const uint64_t big = 1000;
    std::memcpy(f.data(), &big, 8);
    CHECK(contains(parse(f).status().message(), "truncated"));
  }
  SUBCASE("header length over the cap") {
    std::string f(16, '\0');
    const uint64_t huge = uint64_t(1) << 40;
    std::memcpy(f.data(), &huge, 8);
    CHECK(contains(parse(f).status().message(), "cap"));
  }
  SUBCASE("bad JSON") { CHECK(contains(parse(make_st("{not json", 4)).status().message(), "JSON")); }
  SUBCASE("offsets out of range") {
    auto r = parse(make_st(R"({"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})", 4));
    CHECK(contains(r.status().message(), "tensor a"));
    CHECK(contains(r.status().message(), "outside"));
  }
  SUBCASE("size disagrees with shape") {
    auto r = parse(make_st(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}})", 8));
    CHECK(contains(r.status().message(), "elements"));
  }
  SUBCASE("overlapping tensors") {
    auto r = parse(make_st(R"({"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},
                               "b":{"dtype":"F16","shape":[4],"data_offsets":[4,12]}})", 12));
    CHECK(contains(r.status().message(), "overlap"));
  }
  SUBCASE("unknown dtype") {
    auto r = parse(make_st(R"({"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4));
    CHECK(contains(r.status().message(), "F8_E4M3"));
  }
  SUBCASE("negative shape") {
    auto r = parse(make_st(R"({"a":{"dtype":"F16","shape":[-1],"data_offsets":[0,2]}})", 2));
    CHECK_FALSE(r.ok());
  }
  SUBCASE("missing fields") {
    CHECK_FALSE(parse(make_st(R"({"a":{"dtype":"F16","shape":[1]}})", 2)).ok());
    CHECK_FALSE(parse(make_st(R"({"a":7})", 0)).ok());
    CHECK_FALSE(parse(make_st(R"([1,2])", 0)).ok());
  }
}

TEST_CASE("config.json validation names the field") {
  nlohmann::json good = {{"architectures", {"Qwen2ForCausalLM"}}, {"hidden_size", 128},
                         {"intermediate_size", 256}, {"num_hidden_layers", 2},
                         {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                         {"vocab_size", 1000}, {"max_position_embeddings", 4096},
                         {"rms_norm_eps", 1e-6}, {"rope_theta", 1e6}};
  REQUIRE(parse_hf_config(good, "config.json").ok());
  for (const char* field : {"hidden_size", "num_hidden_layers", "vocab_size", "rms_norm_eps"}) {
    auto j = good;
    j.erase(field);
    auto r = parse_hf_config(j, "config.json");
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.status().message(), field));
  }
  auto j = good;
  j["hidden_size"] = "128";
  CHECK(contains(parse_hf_config(j, "c").status().message(), "hidden_size"));
  j = good;
  j["architectures"] = {"LlamaForCausalLM"};
  CHECK(contains(parse_hf_config(j, "c").status().message(), "LlamaForCausalLM"));
  j = good;
  j["num_key_value_heads"] = 3;
  CHECK_FALSE(parse_hf_config(j, "c").ok());
  j = good;
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 4096}};
  auto y = parse_hf_config(j, "c");
  REQUIRE(y.ok());
  CHECK(y->rope_scaling.rope_type == "yarn");
  CHECK(y->rope_scaling.factor == 4.0);
  j["rope_scaling"] = {{"type", "longrope"}, {"factor", 4.0}};
  CHECK(contains(parse_hf_config(j, "c").status().message(), "longrope"));
}

TEST_CASE("compile refuses broken checkpoints, leaving nothing behind") {
  SUBCASE("truncated shard") {
    auto d = copy_tiny("bad_trunc");
    const auto shard = d / "model-00001-of-00003.safetensors";
    fs::resize_file(shard, fs::file_size(shard) - 1000);
    auto msg = compile_error(d, d.parent_path() / "o.qwart");
    CHECK(contains(msg, "model-00001-of-00003.safetensors"));
  }
  SUBCASE("missing tensor") {
    auto d = copy_tiny("bad_missing");
    // Drop a tensor from the index: the shard still has it, the index decides.
    edit_json(d / "model.safetensors.index.json",
              [](auto& j) { j["weight_map"].erase("model.layers.1.mlp.up_proj.weight"); });
    auto msg = compile_error(d, d.parent_path() / "o.qwart");
    CHECK(contains(msg, "model.layers.1.mlp.up_proj.weight"));
  }
  SUBCASE("wrong shape (config disagrees with the weights)") {
    auto d = copy_tiny("bad_shape");
    edit_json(d / "config.json", [](auto& j) { j["intermediate_size"] = 512; });
    auto msg = compile_error(d, d.parent_path() / "o.qwart");
    CHECK(contains(msg, "shape"));
  }
  SUBCASE("missing config field") {
    auto d = copy_tiny("bad_cfg");
    edit_json(d / "config.json", [](auto& j) { j.erase("num_attention_heads"); });
    auto msg = compile_error(d, d.parent_path() / "o.qwart");
    CHECK(contains(msg, "config.json"));
    CHECK(contains(msg, "num_attention_heads"));
  }
  SUBCASE("malformed config.json") {
    auto d = copy_tiny("bad_cfg_json");
    std::ofstream(d / "config.json") << "{\"hidden_size\": ";
    CHECK(contains(compile_error(d, d.parent_path() / "o.qwart"), "malformed"));
  }
  SUBCASE("tp that does not divide the heads") {
    auto d = copy_tiny("bad_tp");
    auto msg = compile_error(d, d.parent_path() / "o.qwart", 8);
    CHECK(contains(msg, "tp=8"));
  }
  SUBCASE("index naming a tensor the shard lacks") {
    auto d = copy_tiny("bad_index");
    edit_json(d / "model.safetensors.index.json",
              [](auto& j) { j["weight_map"]["model.layers.9.extra"] = "model-00002-of-00003.safetensors"; });
    CHECK(contains(compile_error(d, d.parent_path() / "o.qwart"), "model.layers.9.extra"));
  }
  SUBCASE("unwritable output") {
    auto r = testing::compile_to(testing::tiny_checkpoint(), "/nonexistent-dir/x/o.qwart", 1);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.status().message(), "/nonexistent-dir/x/o.qwart"));
  }
}

TEST_CASE("fp16 overflow is refused with a hint to use bf16") {
  auto d = copy_tiny("bad_overflow");
  // Plant bf16 1e6 (beyond fp16's 65504) in the first element of a shard's first tensor.
  auto ck = Checkpoint::open(d.string());
  REQUIRE(ck.ok());
  auto t = ck->find("model.norm.weight");
  REQUIRE(t.ok());
  const std::string file = (*t)->file;
  const uint64_t off = (*t)->file_offset;
  { auto keep = std::move(*ck); }
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(std::streamoff(off));
  const uint16_t big = 0x4974;  // bf16 ~ 999424
  f.write(reinterpret_cast<const char*>(&big), 2);
  f.close();
  auto msg = compile_error(d, d.parent_path() / "o.qwart");
  CHECK(contains(msg, "model.norm.weight"));
  CHECK(contains(msg, "bf16"));
  auto ok = testing::compile_to(d.string(), (d.parent_path() / "o_bf16.qwart").string(), 1, DType::BF16);
  CHECK_MESSAGE(ok.ok(), ok.status().message());
}

TEST_CASE("corrupt artifacts: verify names the section") {
  auto d = testing::scratch_dir("corrupt");
  const auto good = d / "good.qwart";
  REQUIRE(testing::compile_to(testing::tiny_checkpoint(), good.string(), 2).ok());
  std::vector<SectionView> sections;
  std::vector<std::string> names;
  {
    auto a = Artifact::open(good.string());
    REQUIRE(a.ok());
    sections = a->sections();
    for (auto& s : sections) names.emplace_back(s.name);  // views die with the mapping
  }
  REQUIRE(sections.size() >= 2);
  for (size_t i = 0; i < sections.size(); ++i) {
    const auto bad = d / ("bad" + std::to_string(i) + ".qwart");
    fs::copy_file(good, bad, fs::copy_options::overwrite_existing);
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(std::streamoff(sections[i].offset + sections[i].size / 2));
    char c = 0;
    f.read(&c, 1);
    c ^= 0x20;
    f.seekp(std::streamoff(sections[i].offset + sections[i].size / 2));
    f.write(&c, 1);
    f.close();
    CHECK(Artifact::open(bad.string()).ok());  // cheap open does not hash
    Status s = verify_artifact(bad.string());
    REQUIRE_FALSE(s.ok());
    CHECK_MESSAGE(contains(s.message(), "section " + names[i]), s.message());
  }
  SUBCASE("metadata byte flipped") {
    const auto bad = d / "badmeta.qwart";
    fs::copy_file(good, bad, fs::copy_options::overwrite_existing);
    const auto size = fs::file_size(bad);
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(size - 40));
    f.write("\x7f", 1);
    f.close();
    CHECK(contains(Artifact::open(bad.string()).status().message(), "metadata"));
  }
  SUBCASE("truncated artifact") {
    const auto bad = d / "trunc.qwart";
    fs::copy_file(good, bad, fs::copy_options::overwrite_existing);
    fs::resize_file(bad, fs::file_size(bad) / 2);
    CHECK(contains(Artifact::open(bad.string()).status().message(), "truncated"));
  }
  SUBCASE("not an artifact / wrong version") {
    const auto bad = d / "ver.qwart";
    fs::copy_file(good, bad, fs::copy_options::overwrite_existing);
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    const uint32_t v = 99;
    f.write(reinterpret_cast<const char*>(&v), 4);
    f.close();
    CHECK(contains(Artifact::open(bad.string()).status().message(), "version 99"));
    std::ofstream(d / "junk.qwart") << "hello";
    CHECK(contains(Artifact::open((d / "junk.qwart").string()).status().message(), "not a qwart"));
  }
}

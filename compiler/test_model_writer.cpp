#include "compiler/test_model_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "artifact/tensor_names.h"
#include "core/half.h"
#include "core/parallel.h"
#include "core/progress.h"

namespace qw {

namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// Qwen2.5's added tokens end here; the shared tokenizer (Qwen3's release) has more.
constexpr int64_t kQwen25LastAddedToken = 151664;
constexpr int64_t kEndOfText = 151643, kImEnd = 151645;

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  enum Init { Matrix, Bias, Norm } init;
  uint64_t bytes() const {
    uint64_t n = 2;
    for (auto d : shape) n *= uint64_t(d);
    return n;
  }
};

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [-1, 1), a pure function of (seed, tensor, index): shards can be written in
// any order or in parallel and stay identical.
float unit(uint64_t seed, uint64_t tensor, uint64_t i) {
  const uint64_t h = splitmix64(splitmix64(seed ^ (tensor * 0x632be59bd9b4e019ull)) + i);
  return float(double(h >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

std::vector<TensorSpec> tensor_specs(const ModelConfig& c) {
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  std::vector<TensorSpec> t;
  t.push_back({names::kEmbed, {c.vocab_size, H}, TensorSpec::Matrix});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    auto L = [&](const char* s) { return names::layer(l, s); };
    t.push_back({L(names::kInputNorm), {H}, TensorSpec::Norm});
    t.push_back({L("mlp.down_proj.weight"), {H, I}, TensorSpec::Matrix});
    t.push_back({L("mlp.gate_proj.weight"), {I, H}, TensorSpec::Matrix});
    t.push_back({L("mlp.up_proj.weight"), {I, H}, TensorSpec::Matrix});
    t.push_back({L(names::kPostNorm), {H}, TensorSpec::Norm});
    t.push_back({L("self_attn.k_proj.bias"), {c.kv_dim()}, TensorSpec::Bias});
    t.push_back({L("self_attn.k_proj.weight"), {c.kv_dim(), H}, TensorSpec::Matrix});
    t.push_back({L("self_attn.o_proj.weight"), {H, c.q_dim()}, TensorSpec::Matrix});
    t.push_back({L("self_attn.q_proj.bias"), {c.q_dim()}, TensorSpec::Bias});
    t.push_back({L("self_attn.q_proj.weight"), {c.q_dim(), H}, TensorSpec::Matrix});
    t.push_back({L("self_attn.v_proj.bias"), {c.kv_dim()}, TensorSpec::Bias});
    t.push_back({L("self_attn.v_proj.weight"), {c.kv_dim(), H}, TensorSpec::Matrix});
  }
  t.push_back({names::kFinalNorm, {H}, TensorSpec::Norm});
  if (!c.tie_word_embeddings) t.push_back({names::kLmHead, {c.vocab_size, H}, TensorSpec::Matrix});
  return t;
}

class FileOut {
 public:
  static Expected<FileOut> create(const std::string& path) {
    FileOut f;
    f.path_ = path;
    f.fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f.fd_ < 0) return Status::Error(path + ": cannot write: " + std::strerror(errno));
    return f;
  }
  FileOut() = default;
  FileOut(FileOut&& o) noexcept : fd_(std::exchange(o.fd_, -1)), path_(std::move(o.path_)) {}
  ~FileOut() {
    if (fd_ >= 0) ::close(fd_);
  }
  Status write(const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      ssize_t k = ::write(fd_, c, n);
      if (k < 0 && errno == EINTR) continue;
      if (k < 0) return Status::Error(path_ + ": write failed: " + std::strerror(errno));
      c += k;
      n -= size_t(k);
    }
    return Status::Ok();
  }

 private:
  int fd_ = -1;
  std::string path_;
};

Status write_text(const fs::path& p, const std::string& text) {
  QW_ASSIGN_OR_RETURN(FileOut f, FileOut::create(p.string()));
  return f.write(text.data(), text.size());
}

Expected<std::string> read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return Status::Error(p.string() + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

ojson config_json(const ModelConfig& c, const std::string& preset) {
  ojson j;
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["attention_dropout"] = 0.0;
  j["bos_token_id"] = kEndOfText;
  j["eos_token_id"] = kImEnd;
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.hidden_size;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = c.intermediate_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["max_window_layers"] = c.max_window_layers;
  j["model_type"] = "qwen2";
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_scaling"] = nullptr;
  j["rope_theta"] = c.rope_theta;
  j["sliding_window"] = c.sliding_window;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = "bfloat16";
  j["transformers_version"] = "4.43.1";
  j["use_cache"] = true;
  j["use_sliding_window"] = false;
  j["vocab_size"] = c.vocab_size;
  j["_qwc_test_preset"] = preset;
  return j;
}

// Qwen2.5's tokenizer: the shared Qwen3 release minus the added tokens past 151664, and
// the Qwen2.5-Instruct chat template.
Status write_tokenizer(const fs::path& src, const fs::path& dst) {
  QW_ASSIGN_OR_RETURN(std::string tok_text, read_text(src / "tokenizer.json"));
  // Plain (sorted) json: vocab is a map, so key order is irrelevant, and ordered_json's
  // linear lookups make parsing 151k keys quadratic.
  nlohmann::json tok = nlohmann::json::parse(tok_text, nullptr, false);
  if (tok.is_discarded() || !tok.contains("added_tokens"))
    return Status::Error((src / "tokenizer.json").string() + ": not a tokenizer.json");
  nlohmann::json kept = nlohmann::json::array();
  for (auto& a : tok["added_tokens"])
    if (a.value("id", int64_t(0)) <= kQwen25LastAddedToken) kept.push_back(a);
  tok["added_tokens"] = kept;
  QW_RETURN_IF_ERROR(write_text(dst / "tokenizer.json", tok.dump(2)));

  QW_ASSIGN_OR_RETURN(std::string cfg_text, read_text(src / "tokenizer_config.json"));
  ojson cfg = ojson::parse(cfg_text, nullptr, false);
  if (cfg.is_discarded()) return Status::Error((src / "tokenizer_config.json").string() + ": malformed");
  if (cfg.contains("added_tokens_decoder")) {
    ojson dec = ojson::object();
    for (auto it = cfg["added_tokens_decoder"].begin(); it != cfg["added_tokens_decoder"].end(); ++it)
      if (std::stoll(it.key()) <= kQwen25LastAddedToken) dec[it.key()] = it.value();
    cfg["added_tokens_decoder"] = dec;
  }
  QW_ASSIGN_OR_RETURN(std::string tmpl, read_text(src / "qwen2.5-instruct-chat-template.jinja"));
  cfg["chat_template"] = tmpl;
  cfg["model_max_length"] = 131072;
  return write_text(dst / "tokenizer_config.json", cfg.dump(2));
}

Status write_weights(const ModelConfig& c, const TestModelOptions& o, uint64_t max_shard) {
  const auto specs = tensor_specs(c);
  std::vector<std::vector<size_t>> shards(1);
  uint64_t cur = 0, total = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (cur > 0 && cur + specs[i].bytes() > max_shard) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(i);
    cur += specs[i].bytes();
    total += specs[i].bytes();
  }
  const float matrix_scale = float(std::sqrt(3.0 / double(c.hidden_size)));  // std 1/sqrt(H)
  ojson index;
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = ojson::object();
  ProgressBar bar("make-test-model", total);
  std::vector<uint16_t> buf;
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    ojson header = ojson::object();
    header["__metadata__"] = {{"format", "pt"}};
    uint64_t off = 0;
    for (size_t i : shards[s]) {
      header[specs[i].name] = {{"dtype", "BF16"}, {"shape", specs[i].shape},
                               {"data_offsets", {off, off + specs[i].bytes()}}};
      off += specs[i].bytes();
      index["weight_map"][specs[i].name] = name;
    }
    std::string h = header.dump();
    h.resize((h.size() + 7) / 8 * 8, ' ');  // data starts 8-byte aligned, as safetensors pads
    const fs::path path = fs::path(o.output_dir) / name;
    QW_ASSIGN_OR_RETURN(FileOut f, FileOut::create(path.string()));
    const uint64_t hlen = h.size();
    QW_RETURN_IF_ERROR(f.write(&hlen, 8));
    QW_RETURN_IF_ERROR(f.write(h.data(), h.size()));
    for (size_t i : shards[s]) {
      const TensorSpec& t = specs[i];
      const uint64_t n = t.bytes() / 2;
      constexpr uint64_t kChunk = uint64_t(32) << 20;
      for (uint64_t b = 0; b < n; b += kChunk) {
        const uint64_t m = std::min(kChunk, n - b);
        buf.resize(m);
        parallel_for(int64_t(m), default_threads(), [&](int64_t lo, int64_t hi) {
          for (int64_t k = lo; k < hi; ++k) {
            const float u = unit(o.seed, i, b + uint64_t(k));
            const float v = t.init == TensorSpec::Norm   ? 1.0f + 0.1f * u
                            : t.init == TensorSpec::Bias ? 0.1f * u
                                                         : matrix_scale * u;
            buf[size_t(k)] = f32_to_bf16(v);
          }
        });
        QW_RETURN_IF_ERROR(f.write(buf.data(), m * 2));
        bar.advance(m * 2);
      }
    }
  }
  return write_text(fs::path(o.output_dir) / "model.safetensors.index.json", index.dump(2));
}

}  // namespace

Expected<ModelConfig> test_model_preset(const std::string& preset) {
  ModelConfig c;
  c.max_position_embeddings = 32768;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 1000000.0;
  c.sliding_window = 131072;
  if (preset == "7b") {
    c.hidden_size = 3584, c.intermediate_size = 18944, c.num_hidden_layers = 28;
    c.num_attention_heads = 28, c.num_key_value_heads = 4, c.vocab_size = 152064;
    c.tie_word_embeddings = false, c.max_window_layers = 28;
  } else if (preset == "0.5b") {
    c.hidden_size = 896, c.intermediate_size = 4864, c.num_hidden_layers = 24;
    c.num_attention_heads = 14, c.num_key_value_heads = 2, c.vocab_size = 151936;
    c.tie_word_embeddings = true, c.max_window_layers = 21, c.sliding_window = 32768;
  } else if (preset == "tiny") {
    // Real vocabulary and tokenizer, tiny dimensions; 2 KV heads so --tp 4 exercises KV
    // replication, untied so lm_head is exercised.
    c.hidden_size = 128, c.intermediate_size = 384, c.num_hidden_layers = 2;
    c.num_attention_heads = 4, c.num_key_value_heads = 2, c.vocab_size = 151936;
    c.tie_word_embeddings = false, c.max_window_layers = 2;
  } else {
    return Status::Error("unknown preset \"" + preset + "\" (tiny, 0.5b, 7b)");
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  return c;
}

Status write_test_model(const TestModelOptions& o) {
  QW_ASSIGN_OR_RETURN(ModelConfig c, test_model_preset(o.preset));
  if (o.tie_embeddings_override) c.tie_word_embeddings = o.tie_embeddings;
  if (o.layers > 0) c.num_hidden_layers = o.layers;
  std::error_code ec;
  fs::create_directories(o.output_dir, ec);
  if (ec) return Status::Error(o.output_dir + ": cannot create: " + ec.message());
  ojson cfg = config_json(c, o.preset);
  if (!o.rope_scaling_json.empty()) {
    ojson r = ojson::parse(o.rope_scaling_json, nullptr, false);
    if (r.is_discarded() || !r.is_object()) return Status::Error("--rope-scaling: not a JSON object");
    cfg["rope_scaling"] = r;  // as Qwen2.5 documents it: max_position_embeddings unchanged
  }
  QW_RETURN_IF_ERROR(write_text(fs::path(o.output_dir) / "config.json", cfg.dump(2)));
  ojson gen;
  gen["bos_token_id"] = kEndOfText;
  gen["pad_token_id"] = kEndOfText;
  gen["do_sample"] = true;
  gen["eos_token_id"] = {kImEnd, kEndOfText};
  gen["repetition_penalty"] = 1.05;
  gen["temperature"] = 0.7;
  gen["top_p"] = 0.8;
  gen["top_k"] = 20;
  gen["transformers_version"] = "4.37.0";
  QW_RETURN_IF_ERROR(write_text(fs::path(o.output_dir) / "generation_config.json", gen.dump(2)));
  QW_RETURN_IF_ERROR(write_tokenizer(o.tokenizer_dir, o.output_dir));
  const uint64_t shard = o.max_shard_bytes ? o.max_shard_bytes
                         : o.preset == "tiny" ? (uint64_t(24) << 20)
                                              : (uint64_t(4) << 30);
  return write_weights(c, o, shard);
}

}  // namespace qw

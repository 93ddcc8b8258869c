#include "compiler/hf_config.h"

#include <cmath>
#include <filesystem>
#include <fstream>

namespace qw {

namespace {

class FieldReader {
 public:
  FieldReader(const nlohmann::json& j, std::string where) : j_(j), where_(std::move(where)) {}

  Expected<int64_t> integer(const char* key) const {
    if (!j_.contains(key)) return missing(key);
    return integer_value(j_[key], key);
  }
  Expected<int64_t> integer_or(const char* key, int64_t dflt) const {
    if (!j_.contains(key) || j_[key].is_null()) return dflt;
    return integer_value(j_[key], key);
  }
  Expected<double> number(const char* key) const {
    if (!j_.contains(key)) return missing(key);
    return number_value(j_[key], key);
  }
  Expected<double> number_or(const char* key, double dflt) const {
    if (!j_.contains(key) || j_[key].is_null()) return dflt;
    return number_value(j_[key], key);
  }
  Expected<bool> boolean_or(const char* key, bool dflt) const {
    if (!j_.contains(key) || j_[key].is_null()) return dflt;
    if (!j_[key].is_boolean()) return wrong(key, "a boolean");
    return j_[key].get<bool>();
  }
  Expected<std::string> string_or(const char* key, const std::string& dflt) const {
    if (!j_.contains(key) || j_[key].is_null()) return dflt;
    if (!j_[key].is_string()) return wrong(key, "a string");
    return j_[key].get<std::string>();
  }
  // eos_token_id may be one id or a list.
  Expected<std::vector<int64_t>> ids_or_empty(const char* key) const {
    std::vector<int64_t> out;
    if (!j_.contains(key) || j_[key].is_null()) return out;
    const auto& v = j_[key];
    if (v.is_number_integer()) {
      out.push_back(v.get<int64_t>());
      return out;
    }
    if (!v.is_array()) return wrong(key, "an integer or a list of integers");
    for (const auto& e : v) {
      if (!e.is_number_integer()) return wrong(key, "an integer or a list of integers");
      out.push_back(e.get<int64_t>());
    }
    return out;
  }
  Status missing(const char* key) const {
    return Status::Error(where_ + ": missing field \"" + key + "\"");
  }
  Status wrong(const char* key, const char* what) const {
    return Status::Error(where_ + ": field \"" + key + "\" must be " + what);
  }

 private:
  Expected<int64_t> integer_value(const nlohmann::json& v, const char* key) const {
    if (!v.is_number_integer()) return wrong(key, "an integer");
    return v.get<int64_t>();
  }
  Expected<double> number_value(const nlohmann::json& v, const char* key) const {
    if (!v.is_number()) return wrong(key, "a number");
    return v.get<double>();
  }
  const nlohmann::json& j_;
  std::string where_;
};

Status parse_rope(const nlohmann::json& j, const std::string& where, ModelConfig& c) {
  // transformers >= 5 writes rope_parameters (holding rope_theta); older ones rope_scaling.
  const nlohmann::json* r = nullptr;
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) r = &j["rope_scaling"];
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) r = &j["rope_parameters"];
  if (r == nullptr) return Status::Ok();
  if (!r->is_object()) return Status::Error(where + ": rope_scaling must be an object");
  const std::string w = where + " rope_scaling";
  FieldReader f(*r, w);
  QW_ASSIGN_OR_RETURN(std::string type, f.string_or("rope_type", ""));
  if (type.empty()) { QW_ASSIGN_OR_RETURN(type, f.string_or("type", "default")); }
  if (r->contains("rope_theta")) { QW_ASSIGN_OR_RETURN(c.rope_theta, f.number("rope_theta")); }
  if (type == "default") return Status::Ok();
  if (type != "yarn" && type != "linear" && type != "dynamic")
    return Status::Error(w + ": unsupported rope type \"" + type +
                         "\" (supported: default, linear, dynamic, yarn)");
  auto& rs = c.rope_scaling;
  rs.rope_type = type;
  QW_ASSIGN_OR_RETURN(rs.factor, f.number("factor"));
  if (!(rs.factor >= 1.0)) return Status::Error(w + ": factor must be >= 1");
  QW_ASSIGN_OR_RETURN(rs.original_max_position_embeddings,
                      f.integer_or("original_max_position_embeddings", c.max_position_embeddings));
  QW_ASSIGN_OR_RETURN(rs.beta_fast, f.number_or("beta_fast", 32.0));
  QW_ASSIGN_OR_RETURN(rs.beta_slow, f.number_or("beta_slow", 1.0));
  QW_ASSIGN_OR_RETURN(rs.attention_factor, f.number_or("attention_factor", 0.0));
  QW_ASSIGN_OR_RETURN(rs.truncate, f.boolean_or("truncate", true));
  if (r->contains("mscale") || r->contains("mscale_all_dim"))
    return Status::Error(w + ": mscale/mscale_all_dim (DeepSeek-style YaRN) is not supported");
  return Status::Ok();
}

}  // namespace

Expected<ModelConfig> parse_hf_config(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) return Status::Error(where + ": not a JSON object");
  FieldReader f(j, where);
  ModelConfig c;
  if (!j.contains("architectures") || !j["architectures"].is_array() || j["architectures"].empty() ||
      !j["architectures"][0].is_string())
    return f.missing("architectures");
  c.architecture = j["architectures"][0].get<std::string>();
  if (c.architecture != "Qwen2ForCausalLM")
    return Status::Error(where + ": architecture " + c.architecture +
                         " is not supported (supported: Qwen2ForCausalLM)");
  QW_ASSIGN_OR_RETURN(c.model_type, f.string_or("model_type", "qwen2"));
  QW_ASSIGN_OR_RETURN(c.hidden_size, f.integer("hidden_size"));
  QW_ASSIGN_OR_RETURN(c.intermediate_size, f.integer("intermediate_size"));
  QW_ASSIGN_OR_RETURN(c.num_hidden_layers, f.integer("num_hidden_layers"));
  QW_ASSIGN_OR_RETURN(c.num_attention_heads, f.integer("num_attention_heads"));
  QW_ASSIGN_OR_RETURN(c.num_key_value_heads,
                      f.integer_or("num_key_value_heads", c.num_attention_heads));
  QW_ASSIGN_OR_RETURN(c.vocab_size, f.integer("vocab_size"));
  QW_ASSIGN_OR_RETURN(c.max_position_embeddings, f.integer("max_position_embeddings"));
  QW_ASSIGN_OR_RETURN(c.rms_norm_eps, f.number("rms_norm_eps"));
  QW_ASSIGN_OR_RETURN(c.rope_theta, f.number_or("rope_theta", 10000.0));
  QW_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.boolean_or("tie_word_embeddings", false));
  QW_ASSIGN_OR_RETURN(c.use_sliding_window, f.boolean_or("use_sliding_window", false));
  QW_ASSIGN_OR_RETURN(c.sliding_window, f.integer_or("sliding_window", 0));
  QW_ASSIGN_OR_RETURN(c.max_window_layers, f.integer_or("max_window_layers", c.num_hidden_layers));
  QW_ASSIGN_OR_RETURN(c.hidden_act, f.string_or("hidden_act", "silu"));
  QW_ASSIGN_OR_RETURN(c.source_torch_dtype, f.string_or("torch_dtype", ""));
  if (c.source_torch_dtype.empty()) { QW_ASSIGN_OR_RETURN(c.source_torch_dtype, f.string_or("dtype", "")); }
  QW_ASSIGN_OR_RETURN(c.bos_token_id, f.integer_or("bos_token_id", -1));
  QW_ASSIGN_OR_RETURN(c.eos_token_ids, f.ids_or_empty("eos_token_id"));
  QW_ASSIGN_OR_RETURN(c.pad_token_id, f.integer_or("pad_token_id", -1));
  QW_RETURN_IF_ERROR(parse_rope(j, where, c));

  auto positive = [&](const char* key, int64_t v) -> Status {
    return v > 0 ? Status::Ok() : Status::Error(where + ": field \"" + key + "\" must be > 0");
  };
  QW_RETURN_IF_ERROR(positive("hidden_size", c.hidden_size));
  QW_RETURN_IF_ERROR(positive("intermediate_size", c.intermediate_size));
  QW_RETURN_IF_ERROR(positive("num_hidden_layers", c.num_hidden_layers));
  QW_RETURN_IF_ERROR(positive("num_attention_heads", c.num_attention_heads));
  QW_RETURN_IF_ERROR(positive("num_key_value_heads", c.num_key_value_heads));
  QW_RETURN_IF_ERROR(positive("vocab_size", c.vocab_size));
  QW_RETURN_IF_ERROR(positive("max_position_embeddings", c.max_position_embeddings));
  if (!(c.rms_norm_eps > 0)) return Status::Error(where + ": rms_norm_eps must be > 0");
  if (!(c.rope_theta > 0)) return Status::Error(where + ": rope_theta must be > 0");
  if (c.hidden_act != "silu")
    return Status::Error(where + ": hidden_act \"" + c.hidden_act + "\" is not supported (silu)");
  if (c.hidden_size % c.num_attention_heads != 0)
    return Errorf("%s: hidden_size=%lld is not divisible by num_attention_heads=%lld", where.c_str(),
                  (long long)c.hidden_size, (long long)c.num_attention_heads);
  QW_ASSIGN_OR_RETURN(c.head_dim, f.integer_or("head_dim", c.hidden_size / c.num_attention_heads));
  if (c.head_dim * c.num_attention_heads != c.hidden_size)
    return Status::Error(where + ": head_dim x num_attention_heads must equal hidden_size for Qwen2");
  if (c.head_dim % 2 != 0) return Status::Error(where + ": head_dim must be even for RoPE");
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    return Errorf("%s: num_attention_heads=%lld is not a multiple of num_key_value_heads=%lld",
                  where.c_str(), (long long)c.num_attention_heads, (long long)c.num_key_value_heads);
  if (c.use_sliding_window && c.sliding_window <= 0)
    return Status::Error(where + ": use_sliding_window needs sliding_window > 0");
  return c;
}

Expected<nlohmann::json> read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::Error(path + ": cannot open");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return Status::Error(path + ": malformed JSON");
  return j;
}

Expected<ModelConfig> read_hf_config(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  QW_ASSIGN_OR_RETURN(nlohmann::json j, read_json_file(path));
  return parse_hf_config(j, path);
}

Expected<GenerationDefaults> read_generation_config(const std::string& dir,
                                                    const ModelConfig& config) {
  GenerationDefaults g;
  g.bos_token_id = config.bos_token_id;
  g.eos_token_ids = config.eos_token_ids;
  g.pad_token_id = config.pad_token_id;
  const std::string path = (std::filesystem::path(dir) / "generation_config.json").string();
  if (!std::filesystem::exists(path)) return g;
  QW_ASSIGN_OR_RETURN(nlohmann::json j, read_json_file(path));
  if (!j.is_object()) return Status::Error(path + ": not a JSON object");
  FieldReader f(j, path);
  QW_ASSIGN_OR_RETURN(g.do_sample, f.boolean_or("do_sample", false));
  QW_ASSIGN_OR_RETURN(g.temperature, f.number_or("temperature", 1.0));
  QW_ASSIGN_OR_RETURN(g.top_p, f.number_or("top_p", 1.0));
  QW_ASSIGN_OR_RETURN(g.top_k, f.integer_or("top_k", 50));
  QW_ASSIGN_OR_RETURN(g.repetition_penalty, f.number_or("repetition_penalty", 1.0));
  QW_ASSIGN_OR_RETURN(g.max_new_tokens, f.integer_or("max_new_tokens", 0));
  QW_ASSIGN_OR_RETURN(g.bos_token_id, f.integer_or("bos_token_id", g.bos_token_id));
  QW_ASSIGN_OR_RETURN(auto eos, f.ids_or_empty("eos_token_id"));
  if (!eos.empty()) g.eos_token_ids = eos;
  QW_ASSIGN_OR_RETURN(g.pad_token_id, f.integer_or("pad_token_id", g.pad_token_id));
  if (g.temperature < 0) return Status::Error(path + ": temperature must be >= 0");
  if (g.top_p <= 0 || g.top_p > 1) return Status::Error(path + ": top_p must be in (0, 1]");
  if (g.repetition_penalty <= 0) return Status::Error(path + ": repetition_penalty must be > 0");
  return g;
}

}  // namespace qw

// build_tokenizer_blob: reads an HF checkpoint's tokenizer files, checks that every component
// is one this runtime implements exactly (refusing others by name), and converts it to
// TokenizerData.
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_data.h"

namespace qw {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

Expected<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error(path.string() + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::Error(path.string() + ": read error");
  return ss.str();
}

Expected<json> read_json(const fs::path& path) {
  QW_ASSIGN_OR_RETURN(std::string text, read_file(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Error(path.string() + ": not valid JSON");
  return j;
}

// "" / null / absent all mean "not set" for HF's optional string fields.
bool is_unset_string(const json& parent, const char* key) {
  if (!parent.contains(key)) return true;
  const json& v = parent[key];
  return v.is_null() || (v.is_string() && v.get<std::string>().empty());
}

std::string type_of(const json& component) {
  return component.is_object() && component.contains("type") && component["type"].is_string()
             ? component["type"].get<std::string>()
             : std::string("?");
}

Status check_byte_level(const json& c, const char* where) {
  if (type_of(c) != "ByteLevel") {
    return Status::Error(std::string(where) + ": unsupported type '" + type_of(c) +
                         "' (only ByteLevel)");
  }
  if (c.value("add_prefix_space", false)) {
    return Status::Error(std::string(where) + ": add_prefix_space=true is not supported");
  }
  return Status::Ok();
}

Status parse_normalizer(const json& n, TokenizerData* d) {
  if (n.is_null()) {
    d->normalizer = Normalizer::kNone;
    return Status::Ok();
  }
  if (type_of(n) != "NFC") {
    return Status::Error("tokenizer.json normalizer: unsupported type '" + type_of(n) +
                         "' (only NFC or none)");
  }
  d->normalizer = Normalizer::kNfc;
  return Status::Ok();
}

Status parse_pre_tokenizer(const json& p, TokenizerData* d) {
  const char* where = "tokenizer.json pre_tokenizer";
  if (type_of(p) != "Sequence" || !p.contains("pretokenizers") || !p["pretokenizers"].is_array() ||
      p["pretokenizers"].size() != 2) {
    return Status::Error(std::string(where) + ": unsupported type '" + type_of(p) +
                         "' (only Sequence[Split, ByteLevel])");
  }
  const json& split = p["pretokenizers"][0];
  if (type_of(split) != "Split") {
    return Status::Error(std::string(where) + "[0]: unsupported type '" + type_of(split) +
                         "' (only Split)");
  }
  if (!split.contains("pattern") || !split["pattern"].contains("Regex") ||
      !split["pattern"]["Regex"].is_string()) {
    return Status::Error(std::string(where) + "[0].pattern: only {\"Regex\": ...} is supported");
  }
  if (split.value("behavior", "") != "Isolated" || split.value("invert", true)) {
    return Status::Error(std::string(where) +
                         "[0]: only behavior=Isolated with invert=false is supported");
  }
  d->split_regex = split["pattern"]["Regex"].get<std::string>();
  const json& bl = p["pretokenizers"][1];
  QW_RETURN_IF_ERROR(check_byte_level(bl, "tokenizer.json pre_tokenizer[1]"));
  if (bl.value("use_regex", true)) {
    return Status::Error(
        "tokenizer.json pre_tokenizer[1]: ByteLevel use_regex=true is not supported");
  }
  return Status::Ok();
}

Status parse_model(const json& m, TokenizerData* d, std::unordered_map<std::string, int32_t>* ids) {
  const char* where = "tokenizer.json model";
  if (type_of(m) != "BPE") {
    return Status::Error(std::string(where) + ": unsupported type '" + type_of(m) + "' (only BPE)");
  }
  if (m.contains("dropout") && !m["dropout"].is_null()) {
    return Status::Error(std::string(where) + ".dropout: only null is supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!is_unset_string(m, key)) {
      return Status::Error(std::string(where) + "." + key + ": only empty is supported");
    }
  }
  for (const char* key : {"byte_fallback", "ignore_merges"}) {
    if (m.value(key, false)) {
      return Status::Error(std::string(where) + "." + key + ": only false is supported");
    }
  }
  if (!m.contains("vocab") || !m["vocab"].is_object()) {
    return Status::Error(std::string(where) + ".vocab: missing or not an object");
  }
  const json& vocab = m["vocab"];
  d->vocab.assign(vocab.size(), std::string());
  std::vector<bool> seen(vocab.size(), false);
  for (const auto& [token, id_json] : vocab.items()) {
    if (!id_json.is_number_integer()) {
      return Status::Error(std::string(where) + ".vocab['" + token + "']: id is not an integer");
    }
    const int64_t id = id_json.get<int64_t>();
    if (id < 0 || static_cast<size_t>(id) >= vocab.size() || seen[id]) {
      return Errorf("%s.vocab: ids must be exactly 0..%zu (token '%s' has id %lld)", where,
                    vocab.size() - 1, token.c_str(), static_cast<long long>(id));
    }
    auto bytes = byte_level::decode_token(token);
    if (!bytes || bytes->empty() || bytes->size() > UINT16_MAX) {
      return Status::Error(std::string(where) + ".vocab['" + token + "']: not a byte-level token");
    }
    seen[id] = true;
    d->vocab[id] = std::move(*bytes);
    (*ids)[token] = static_cast<int32_t>(id);
  }
  if (!m.contains("merges") || !m["merges"].is_array()) {
    return Status::Error(std::string(where) + ".merges: missing or not an array");
  }
  // HF builds its merge map by inserting in order, so a repeated pair keeps its last rank.
  std::map<std::pair<int32_t, int32_t>, size_t> last_index;
  std::vector<Merge> merges;
  for (const json& mj : m["merges"]) {
    std::string a, b;
    if (mj.is_array() && mj.size() == 2 && mj[0].is_string() && mj[1].is_string()) {
      a = mj[0].get<std::string>();
      b = mj[1].get<std::string>();
    } else if (mj.is_string()) {  // older "a b" form
      const std::string s = mj.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return Status::Error(std::string(where) + ".merges: bad entry '" + s + "'");
      }
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else {
      return Status::Error(std::string(where) + ".merges: entry is neither [a, b] nor \"a b\"");
    }
    const auto ia = ids->find(a), ib = ids->find(b), ir = ids->find(a + b);
    if (ia == ids->end() || ib == ids->end() || ir == ids->end()) {
      return Status::Error(std::string(where) + ".merges: '" + a + "' '" + b +
                           "' refers to a token not in the vocab");
    }
    const auto key = std::pair{ia->second, ib->second};
    last_index[key] = merges.size();
    merges.push_back({ia->second, ib->second, ir->second});
  }
  for (size_t i = 0; i < merges.size(); ++i) {
    if (last_index[{merges[i].left, merges[i].right}] == i) d->merges.push_back(merges[i]);
  }
  return Status::Ok();
}

Status parse_added_tokens(const json& list, const std::unordered_map<std::string, int32_t>& ids,
                          TokenizerData* d) {
  if (list.is_null()) return Status::Ok();
  if (!list.is_array()) return Status::Error("tokenizer.json added_tokens: not an array");
  for (const json& t : list) {
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
        !t.contains("content") || !t["content"].is_string()) {
      return Status::Error(
          "tokenizer.json added_tokens: entry without integer id / string content");
    }
    AddedTokenData a;
    a.id = t["id"].get<int32_t>();
    a.content = t["content"].get<std::string>();
    const std::string where = "tokenizer.json added_tokens['" + a.content + "']";
    if (a.content.empty()) return Status::Error(where + ": empty content");
    if (a.id < 0) return Status::Error(where + ": negative id");
    if (static_cast<size_t>(a.id) < d->vocab.size()) {
      const auto it = ids.find(a.content);
      if (it == ids.end() || it->second != a.id) {
        return Status::Error(where + ": id collides with a different vocab token");
      }
    }
    // normalized=true tokens are matched after normalization, single_word=true ones need
    // word-boundary rules; neither appears in Qwen tokenizers, so both are refused.
    if (t.value("normalized", false)) {
      return Status::Error(where + ": normalized=true is not supported");
    }
    if (t.value("single_word", false)) {
      return Status::Error(where + ": single_word=true is not supported");
    }
    a.special = t.value("special", false);
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    d->added_tokens.push_back(std::move(a));
  }
  return Status::Ok();
}

// Special-token fields of tokenizer_config.json are a string or an AddedToken object.
std::optional<std::string> token_content(const json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

Status parse_chat_template(const fs::path& dir, const json& config, TokenizerData* d) {
  // transformers prefers a standalone chat_template.jinja over tokenizer_config's field.
  const fs::path jinja = dir / "chat_template.jinja";
  if (fs::exists(jinja)) {
    QW_ASSIGN_OR_RETURN(d->chat_template, read_file(jinja));
    return Status::Ok();
  }
  if (!config.contains("chat_template")) return Status::Ok();
  const json& t = config["chat_template"];
  if (t.is_string()) {
    d->chat_template = t.get<std::string>();
    return Status::Ok();
  }
  if (t.is_array()) {  // named templates: use "default"
    for (const json& e : t) {
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
          e["template"].is_string()) {
        d->chat_template = e["template"].get<std::string>();
        return Status::Ok();
      }
    }
  }
  return Status::Error(
      "tokenizer_config.json chat_template: neither a string nor a list "
      "with a 'default' entry");
}

Status parse_special_ids(const fs::path& dir, const json& config, TokenizerData* d) {
  const auto find_added = [&](const std::string& content) -> std::optional<int32_t> {
    for (const AddedTokenData& a : d->added_tokens) {
      if (a.content == content) return a.id;
    }
    return std::nullopt;
  };
  const auto add_eos = [&](int32_t id) {
    if (std::find(d->eos_ids.begin(), d->eos_ids.end(), id) == d->eos_ids.end()) {
      d->eos_ids.push_back(id);
    }
  };
  if (auto eos = token_content(config, "eos_token")) {
    auto id = find_added(*eos);
    if (!id) return Status::Error("tokenizer_config.json eos_token '" + *eos + "' is not a token");
    add_eos(*id);
  }
  if (auto pad = token_content(config, "pad_token")) {
    auto id = find_added(*pad);
    if (!id) return Status::Error("tokenizer_config.json pad_token '" + *pad + "' is not a token");
    d->pad_id = *id;
  }
  // generation_config.json may list more stop ids (Qwen2.5-Instruct: im_end and endoftext).
  const fs::path gen = dir / "generation_config.json";
  if (fs::exists(gen)) {
    QW_ASSIGN_OR_RETURN(json g, read_json(gen));
    const json e = g.value("eos_token_id", json());
    if (e.is_number_integer()) add_eos(e.get<int32_t>());
    if (e.is_array()) {
      for (const json& x : e) {
        if (!x.is_number_integer()) {
          return Status::Error("generation_config.json eos_token_id: not an integer list");
        }
        add_eos(x.get<int32_t>());
      }
    }
  }
  return Status::Ok();
}

}  // namespace

Expected<TokenizerData> import_hf_tokenizer(const std::string& hf_dir) {
  const fs::path dir(hf_dir);
  QW_ASSIGN_OR_RETURN(json tj, read_json(dir / "tokenizer.json"));
  TokenizerData d;
  std::unordered_map<std::string, int32_t> ids;
  QW_RETURN_IF_ERROR(parse_normalizer(tj.value("normalizer", json()), &d));
  QW_RETURN_IF_ERROR(parse_pre_tokenizer(tj.value("pre_tokenizer", json()), &d));
  QW_RETURN_IF_ERROR(parse_model(tj.value("model", json()), &d, &ids));
  QW_RETURN_IF_ERROR(check_byte_level(tj.value("decoder", json()), "tokenizer.json decoder"));
  const json post = tj.value("post_processor", json());
  if (!post.is_null()) QW_RETURN_IF_ERROR(check_byte_level(post, "tokenizer.json post_processor"));
  QW_RETURN_IF_ERROR(parse_added_tokens(tj.value("added_tokens", json()), ids, &d));
  json config = json::object();
  if (fs::exists(dir / "tokenizer_config.json")) {
    QW_ASSIGN_OR_RETURN(config, read_json(dir / "tokenizer_config.json"));
  }
  QW_RETURN_IF_ERROR(parse_special_ids(dir, config, &d));
  QW_RETURN_IF_ERROR(parse_chat_template(dir, config, &d));
  return d;
}

Expected<std::vector<uint8_t>> build_tokenizer_blob(const std::string& hf_dir) {
  QW_ASSIGN_OR_RETURN(TokenizerData d, import_hf_tokenizer(hf_dir));
  // Build once to prove the blob loads (regex compiles, ids consistent) before it is stored.
  std::vector<uint8_t> blob = serialize_tokenizer_data(d);
  auto check = Tokenizer::from_blob(blob);
  if (!check.ok()) return check.status().context(hf_dir);
  return blob;
}

}  // namespace qw

#include "compiler/gptq/quant_config.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace qw::gptq {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

Status field_error(const std::string& where, const std::string& field, const json& v,
                   const std::string& why) {
  return Status::Error(where + ": " + field + " = " + v.dump() + ": " + why);
}

Expected<GptqConfig> parse_object(const json& j, const std::string& where) {
  if (!j.is_object()) return Status::Error(where + ": quantization settings are not an object");
  GptqConfig c;
  c.source = where;
  if (j.contains("quant_method")) {
    const json& m = j["quant_method"];
    if (!m.is_string() || m.get<std::string>() != "gptq")
      return field_error(where, "quant_method", m, "only \"gptq\" is supported (AWQ, bitsandbytes, "
                                                   "fp8 and others are not)");
  }
  if (j.contains("is_marlin_format") && j["is_marlin_format"].is_boolean() &&
      j["is_marlin_format"].get<bool>())
    return field_error(where, "is_marlin_format", j["is_marlin_format"],
                       "Marlin-packed checkpoints are not supported; use the gptq export");
  if (!j.contains("bits") || !j["bits"].is_number_integer())
    return Status::Error(where + ": bits is missing or not an integer");
  c.bits = j["bits"].get<int>();
  if (c.bits != 4) return field_error(where, "bits", j["bits"], "only 4-bit GPTQ is supported");
  if (j.contains("group_size")) {
    if (!j["group_size"].is_number_integer())
      return field_error(where, "group_size", j["group_size"], "not an integer");
    c.group_size = j["group_size"].get<int>();
    if (c.group_size != 32 && c.group_size != 64 && c.group_size != 128 && c.group_size != -1)
      return field_error(where, "group_size", j["group_size"], "supported: 32, 64, 128, -1");
  }
  auto boolean = [&](const char* f, bool& out) -> Status {
    if (!j.contains(f) || j[f].is_null()) return Status::Ok();
    if (!j[f].is_boolean()) return field_error(where, f, j[f], "not a boolean");
    out = j[f].get<bool>();
    return Status::Ok();
  };
  QW_RETURN_IF_ERROR(boolean("sym", c.sym));
  QW_RETURN_IF_ERROR(boolean("desc_act", c.desc_act));
  // GPTQModel writes "checkpoint_format" (older) or "format" (newer); both name the packing.
  for (const char* f : {"checkpoint_format", "format"}) {
    if (!j.contains(f) || j[f].is_null()) continue;
    if (!j[f].is_string()) return field_error(where, f, j[f], "not a string");
    const std::string v = j[f].get<std::string>();
    if (v == "gptq") c.format = CheckpointFormat::kGptqV1;
    else if (v == "gptq_v2") c.format = CheckpointFormat::kGptqV2;
    else
      return field_error(where, f, j[f], "supported: \"gptq\", \"gptq_v2\" (marlin, bitblas, "
                                         "ipex, exllama layouts are not)");
  }
  if (j.contains("pack_dtype") && !(j["pack_dtype"].is_string() &&
                                    j["pack_dtype"].get<std::string>() == "int32"))
    return field_error(where, "pack_dtype", j["pack_dtype"], "only int32 packing is supported");
  return c;
}

}  // namespace

Expected<GptqConfig> parse_gptq_config(const std::string& text, const std::string& where) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return Status::Error(where + ": malformed JSON");
  return parse_object(j, where);
}

Expected<std::optional<GptqConfig>> read_gptq_config(const std::string& dir) {
  auto read = [](const fs::path& p, json& out) -> Status {
    std::ifstream in(p);
    if (!in) return Status::Error(p.string() + ": cannot open");
    out = json::parse(in, nullptr, false);
    if (out.is_discarded()) return Status::Error(p.string() + ": malformed JSON");
    return Status::Ok();
  };
  // AutoGPTQ's own file wins: transformers copies it into config.json, not the reverse.
  const fs::path qc = fs::path(dir) / "quantize_config.json";
  if (fs::exists(qc)) {
    json j;
    QW_RETURN_IF_ERROR(read(qc, j));
    QW_ASSIGN_OR_RETURN(GptqConfig c, parse_object(j, qc.string()));
    return std::optional<GptqConfig>(c);
  }
  const fs::path cfg = fs::path(dir) / "config.json";
  if (!fs::exists(cfg)) return std::optional<GptqConfig>();
  json j;
  QW_RETURN_IF_ERROR(read(cfg, j));
  if (!j.is_object() || !j.contains("quantization_config") || j["quantization_config"].is_null())
    return std::optional<GptqConfig>();
  QW_ASSIGN_OR_RETURN(GptqConfig c,
                      parse_object(j["quantization_config"], cfg.string() + " quantization_config"));
  return std::optional<GptqConfig>(c);
}

}  // namespace qw::gptq

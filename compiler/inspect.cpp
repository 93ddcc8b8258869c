#include "compiler/inspect.h"

#include <cstdio>

namespace qw {

namespace {
const char* kind_name(fb::SectionKind k) { return fb::EnumNameSectionKind(k); }
std::string human_bytes(uint64_t n) {
  char b[32];
  if (n >= (uint64_t(1) << 30)) std::snprintf(b, sizeof b, "%.2f GiB", double(n) / double(1 << 30));
  else if (n >= (uint64_t(1) << 20)) std::snprintf(b, sizeof b, "%.2f MiB", double(n) / double(1 << 20));
  else std::snprintf(b, sizeof b, "%llu B", (unsigned long long)n);
  return b;
}
std::string hex64(uint64_t v) {
  char b[20];
  std::snprintf(b, sizeof b, "%016llx", (unsigned long long)v);
  return b;
}
}  // namespace

nlohmann::ordered_json describe_artifact(const Artifact& a) {
  using oj = nlohmann::ordered_json;
  const ModelConfig& c = a.config();
  const fb::Artifact& m = a.metadata();
  oj j;
  j["file"] = a.path();
  j["format_version"] = m.format_version();
  j["file_size"] = a.file().size();
  j["weight_dtype"] = std::string(dtype_name(a.weight_dtype()));
  j["tp_size"] = a.tp_size();
  oj cfg;
  cfg["architecture"] = c.architecture;
  cfg["hidden_size"] = c.hidden_size;
  cfg["intermediate_size"] = c.intermediate_size;
  cfg["num_hidden_layers"] = c.num_hidden_layers;
  cfg["num_attention_heads"] = c.num_attention_heads;
  cfg["num_key_value_heads"] = c.num_key_value_heads;
  cfg["head_dim"] = c.head_dim;
  cfg["vocab_size"] = c.vocab_size;
  cfg["max_position_embeddings"] = c.max_position_embeddings;
  cfg["rms_norm_eps"] = c.rms_norm_eps;
  cfg["rope_theta"] = c.rope_theta;
  if (!c.rope_scaling.rope_type.empty())
    cfg["rope_scaling"] = {{"rope_type", c.rope_scaling.rope_type},
                           {"factor", c.rope_scaling.factor},
                           {"original_max_position_embeddings",
                            c.rope_scaling.original_max_position_embeddings}};
  cfg["tie_word_embeddings"] = c.tie_word_embeddings;
  cfg["use_sliding_window"] = c.use_sliding_window;
  cfg["sliding_window"] = c.sliding_window;
  cfg["eos_token_ids"] = c.eos_token_ids;
  j["config"] = cfg;
  const GenerationDefaults& g = a.generation();
  j["generation"] = {{"do_sample", g.do_sample},         {"temperature", g.temperature},
                     {"top_p", g.top_p},                 {"top_k", g.top_k},
                     {"repetition_penalty", g.repetition_penalty},
                     {"eos_token_ids", g.eos_token_ids}};
  oj secs = oj::array();
  for (const fb::Section* s : *m.sections())
    secs.push_back({{"name", s->name() ? s->name()->str() : ""},
                    {"kind", kind_name(s->kind())},
                    {"tp_rank", s->tp_rank()},
                    {"offset", s->offset()},
                    {"size", s->size()},
                    {"compression", fb::EnumNameCompression(s->compression())},
                    {"uncompressed_size", s->uncompressed_size()},
                    {"checksum", std::string("xxh3_64:") + hex64(s->checksum())}});
  j["sections"] = secs;
  oj tens = oj::array();
  for (const TensorView& t : a.tensors())
    tens.push_back({{"name", std::string(t.name)},
                    {"dtype", std::string(dtype_name(t.dtype))},
                    {"shape", t.shape},
                    {"tp_rank", t.tp_rank},
                    {"layout", fb::EnumNameLayout(t.layout)},
                    {"tp_split", fb::EnumNameTpSplit(t.tp_split)},
                    {"section", t.section},
                    {"offset", t.offset_in_section},
                    {"size", t.size}});
  j["tensors"] = tens;
  oj kers = oj::array();
  if (m.kernels())
    for (const fb::KernelImage* k : *m.kernels())
      kers.push_back({{"module", k->module_name()->str()}, {"arch", k->arch()->str()},
                      {"format", k->format()->str()}, {"size", k->size()}});
  j["kernels"] = kers;
  if (const fb::Provenance* p = m.provenance()) {
    oj srcs = oj::array();
    if (p->sources())
      for (const fb::SourceFile* s : *p->sources())
        srcs.push_back({{"name", s->name()->str()}, {"size", s->size()}, {"sha256", s->sha256()->str()}});
    j["provenance"] = {{"compiler_version", p->compiler_version() ? p->compiler_version()->str() : ""},
                       {"command_line", p->command_line() ? p->command_line()->str() : ""},
                       {"sources", srcs}};
  }
  return j;
}

std::string format_artifact_text(const Artifact& a) {
  const auto j = describe_artifact(a);
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%s: qwart v%u, %s, %s weights, tp=%d\n", a.path().c_str(),
                a.metadata().format_version(), human_bytes(a.file().size()).c_str(),
                std::string(dtype_name(a.weight_dtype())).c_str(), a.tp_size());
  out += line;
  out += "config:\n";
  for (auto it = j["config"].begin(); it != j["config"].end(); ++it)
    out += "  " + it.key() + " = " + it.value().dump() + "\n";
  out += "generation defaults: " + j["generation"].dump() + "\n";
  out += "sections:\n";
  for (const auto& s : j["sections"]) {
    std::snprintf(line, sizeof line, "  %-16s %-9s rank %2d  offset %14llu  %12s  %s\n",
                  s["name"].get<std::string>().c_str(), s["kind"].get<std::string>().c_str(),
                  s["tp_rank"].get<int>(), (unsigned long long)s["offset"].get<uint64_t>(),
                  human_bytes(s["size"].get<uint64_t>()).c_str(),
                  s["checksum"].get<std::string>().c_str());
    out += line;
  }
  std::snprintf(line, sizeof line, "tensors: %zu (use --json for the full table)\n",
                j["tensors"].size());
  out += line;
  for (const auto& t : j["tensors"]) {
    if (t["tp_rank"].get<int>() != 0) continue;
    const std::string name = t["name"].get<std::string>();
    if (name.rfind("model.layers.", 0) == 0 && name.rfind("model.layers.0.", 0) != 0) continue;
    std::snprintf(line, sizeof line, "  %-48s %-5s %-16s %-11s %s\n", name.c_str(),
                  t["dtype"].get<std::string>().c_str(), t["shape"].dump().c_str(),
                  t["layout"].get<std::string>().c_str(), t["tp_split"].get<std::string>().c_str());
    out += line;
  }
  if (j.contains("provenance")) out += "provenance: " + j["provenance"]["command_line"].get<std::string>() + "\n";
  return out;
}

}  // namespace qw

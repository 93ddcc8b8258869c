// A byte-level pushdown automaton that accepts exactly `prefix JSON-value suffix`, where the
// value is an instance of a SchemaGraph (json_schema.h). It runs over the bytes of tokens,
// so UTF-8 inside strings is validated byte by byte too.
//
// A configuration is the top frame plus an interned stack below it (an id into a table the
// automaton owns), so a configuration is 24 bytes and copying one per byte is cheap: the
// token-trie walk in grammar.cpp advances one per trie node. anyOf alternatives that
// cannot be told apart yet (two object shapes after '{') are followed as parallel
// configurations; a State is the set of them.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "structured/json_schema.h"

namespace qw {

struct JsonConfig {
  uint64_t cands = 0;   // candidate bitmask: property keys being matched, enum literals
  uint32_t node = 0;    // schema node of the frame
  uint32_t pos = 0;     // object: next property index (or the chosen one); array: item count
  uint32_t parent = 0;  // interned stack below the top frame (0 = nothing)
  uint16_t len = 0;     // bytes matched (key, literal, prefix, suffix); hex digits left
  uint8_t kind = 0;     // FrameKind
  uint8_t mode = 0;     // per-kind mode
  bool operator==(const JsonConfig& o) const { return std::memcmp(this, &o, sizeof o) == 0; }
};
static_assert(sizeof(JsonConfig) == 24, "no padding: configurations are compared as bytes");

// A set of live configurations; empty means the bytes so far are not a valid prefix.
struct JsonState {
  static constexpr uint32_t kMax = 64;  // more parallel alternatives are dropped
  uint32_t n = 0;
  JsonConfig c[kMax];
  void copy_from(const JsonState& o) {
    n = o.n;
    std::memcpy(c, o.c, sizeof(JsonConfig) * n);
  }
  std::string key() const {
    return std::string(reinterpret_cast<const char*>(c), sizeof(JsonConfig) * n);
  }
};

class JsonAutomaton {
 public:
  JsonAutomaton(SchemaGraph graph, std::string prefix, std::string suffix);

  JsonState initial() const;
  // out = every configuration of `in` advanced by byte b (out must not alias in).
  void step(const JsonState& in, uint8_t b, JsonState& out);
  // The text may end here.
  bool accepting(const JsonState& s) const;
  // No byte can follow (the suffix or the closing bracket of the value is written).
  bool done(const JsonState& s) const;
  // The shortest bytes that make the text complete (empty when accepting).
  std::string completion(const JsonState& s) const;

  const SchemaGraph& graph() const { return g_; }
  size_t interned_stacks() const { return stack_.size(); }

 private:
  void step_config(const JsonConfig& c, uint8_t b, JsonState& out);
  void begin_value(uint32_t node, JsonConfig parent, uint8_t b, JsonState& out);
  void push_child(const JsonConfig& parent, JsonConfig child, JsonState& out);
  void pop(const JsonConfig& c, JsonState& out, int reprocess);
  uint32_t intern(const JsonConfig& c);
  uint64_t key_candidates(const SchemaNode& n, uint32_t from) const;
  bool config_accepting(const JsonConfig& c) const;
  std::string frame_completion(const JsonConfig& c) const;
  std::string required_rest(const SchemaNode& n, uint32_t from, bool first) const;

  SchemaGraph g_;
  std::string prefix_, suffix_;
  std::vector<JsonConfig> stack_;  // interned frames; [0] is unused (no parent)
  struct Hash {
    size_t operator()(const JsonConfig& c) const;
  };
  std::unordered_map<JsonConfig, uint32_t, Hash> intern_;
};

}  // namespace qw

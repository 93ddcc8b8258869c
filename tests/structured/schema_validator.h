// An independent checker for the JSON Schema subset the grammar supports, so tests judge
// generated text against the schema itself rather than against the automaton.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace qw::testing {

template <typename V, typename S>
bool validate(const V& v, const S& s, const S& root, std::string& why) {
  using json = S;
  if (s.is_boolean()) return s.template get<bool>();
  if (s.contains("$ref")) {
    std::string ref = s["$ref"];
    const json* cur = &root;
    size_t pos = 1;
    while (pos < ref.size()) {
      size_t next = ref.find('/', pos + 1);
      if (next == std::string::npos) next = ref.size();
      cur = &(*cur)[ref.substr(pos + 1, next - pos - 1)];
      pos = next;
    }
    return validate(v, *cur, root, why);
  }
  if (s.contains("allOf")) return validate(v, s["allOf"][0], root, why);
  if (s.contains("anyOf")) {
    for (const auto& a : s["anyOf"])
      if (validate(v, a, root, why)) return true;
    why = "no anyOf alternative matches " + v.dump();
    return false;
  }
  if (s.contains("const") && V(s["const"]) != v) return why = "const " + v.dump(), false;
  if (s.contains("enum")) {
    bool found = false;
    for (const auto& e : s["enum"]) found |= V(e) == v;
    if (!found) return why = "enum " + v.dump(), false;
  }
  if (s.contains("type")) {
    std::vector<std::string> types;
    if (s["type"].is_string()) types.push_back(s["type"]);
    else for (const auto& t : s["type"]) types.push_back(t);
    bool ok = false;
    for (const auto& t : types)
      ok |= (t == "object" && v.is_object()) || (t == "array" && v.is_array()) ||
            (t == "string" && v.is_string()) || (t == "number" && v.is_number()) ||
            (t == "integer" && v.is_number_integer()) || (t == "boolean" && v.is_boolean()) ||
            (t == "null" && v.is_null());
    if (!ok) return why = "type of " + v.dump(), false;
  }
  if (v.is_object()) {
    if (s.contains("required"))
      for (const auto& r : s["required"])
        if (!v.contains(r.template get<std::string>())) return why = "missing " + r.dump(), false;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (s.contains("properties") && s["properties"].contains(it.key())) {
        if (!validate(it.value(), s["properties"][it.key()], root, why)) return false;
      } else if (s.contains("additionalProperties")) {
        if (!validate(it.value(), s["additionalProperties"], root, why))
          return why = "additional property " + it.key() + ": " + why, false;
      }
    }
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].template get<size_t>()) return why = "minItems", false;
    if (s.contains("maxItems") && v.size() > s["maxItems"].template get<size_t>()) return why = "maxItems", false;
    if (s.contains("items"))
      for (const auto& e : v)
        if (!validate(e, s["items"], root, why)) return false;
  }
  return true;
}

}  // namespace qw::testing

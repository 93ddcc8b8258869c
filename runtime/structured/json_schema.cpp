#include "structured/json_schema.h"

#include <map>
#include <optional>
#include <set>

namespace qw {

using json = nlohmann::ordered_json;  // keeps properties in declared order

namespace {

// Keywords that describe but never constrain: accepted and ignored.
const std::set<std::string> kAnnotations = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "strict"};

const std::set<std::string> kSupported = {
    "type", "properties", "required", "additionalProperties", "items", "minItems",
    "maxItems", "enum", "const", "anyOf", "allOf", "$ref"};

constexpr uint32_t kMaxMinItems = 1024;  // forced completion writes minItems items

class Compiler {
 public:
  Compiler(const json& doc, std::string where) : doc_(doc), where_(std::move(where)) {}

  Expected<SchemaGraph> run() {
    auto root = compile(doc_, where_);
    if (!root.ok()) return root.status();
    g_.root = *root;
    QW_RETURN_IF_ERROR(compute_min_text());
    return std::move(g_);
  }

 private:
  uint32_t add(SchemaNode n) {
    g_.nodes.push_back(std::move(n));
    return uint32_t(g_.nodes.size() - 1);
  }

  // The "any JSON value" node (built once; it refers to itself through objects/arrays).
  uint32_t any() {
    if (any_) return *any_;
    any_ = add(SchemaNode{SchemaKind::AnyOf});
    SchemaNode obj{SchemaKind::Object};
    obj.free_map = true;
    obj.value_node = *any_;
    SchemaNode arr{SchemaKind::Array};
    arr.items = *any_;
    SchemaNode lit{SchemaKind::Literal};
    lit.literals = {"true", "false", "null"};
    const uint32_t o = add(obj), a = add(arr), s = add(SchemaNode{SchemaKind::String}),
                   n = add(SchemaNode{SchemaKind::Number}), l = add(lit);
    g_.nodes[*any_].alts = {o, a, s, n, l};
    return *any_;
  }

  static Status err(const std::string& path, const std::string& what) {
    return Status::Error(path + ": " + what);
  }

  Expected<const json*> resolve(const std::string& ref, const std::string& path) {
    if (ref.empty() || ref[0] != '#')
      return err(path, "only local $ref ('#/$defs/...') is supported, got '" + ref + "'");
    const json* cur = &doc_;
    size_t pos = 1;
    while (pos < ref.size()) {
      if (ref[pos] != '/') return err(path, "malformed $ref '" + ref + "'");
      size_t next = ref.find('/', pos + 1);
      if (next == std::string::npos) next = ref.size();
      std::string key = ref.substr(pos + 1, next - pos - 1);
      for (size_t i; (i = key.find("~1")) != std::string::npos;) key.replace(i, 2, "/");
      for (size_t i; (i = key.find("~0")) != std::string::npos;) key.replace(i, 2, "~");
      if (!cur->is_object() || !cur->contains(key))
        return err(path, "$ref '" + ref + "' does not resolve");
      cur = &(*cur)[key];
      pos = next;
    }
    return cur;
  }

  Expected<uint32_t> compile(const json& s, const std::string& path) {
    if (s.is_boolean()) {
      if (s.get<bool>()) return any();
      return err(path, "the schema 'false' has no instance");
    }
    if (!s.is_object()) return err(path, "a schema must be an object or a boolean");
    bool constrains = false;
    for (auto it = s.begin(); it != s.end(); ++it) {
      if (kAnnotations.count(it.key())) continue;
      if (!kSupported.count(it.key()))
        return err(path, "unsupported JSON Schema keyword '" + it.key() + "'");
      constrains = true;
    }
    if (!constrains) return any();
    auto only = [&](const char* kw) -> Status {
      for (auto it = s.begin(); it != s.end(); ++it)
        if (it.key() != kw && !kAnnotations.count(it.key()))
          return err(path, std::string("'") + kw + "' combined with '" + it.key() +
                               "' is not supported");
      return Status::Ok();
    };
    if (s.contains("$ref")) {
      QW_RETURN_IF_ERROR(only("$ref"));
      if (!s["$ref"].is_string()) return err(path + ".$ref", "must be a string");
      const std::string ref = s["$ref"];
      if (auto it = refs_.find(ref); it != refs_.end()) return it->second;
      // Reserve the node first so recursive references find it.
      const uint32_t slot = add(SchemaNode{SchemaKind::AnyOf});
      refs_[ref] = slot;
      auto target = resolve(ref, path + ".$ref");
      if (!target.ok()) return target.status();
      auto t = compile(**target, path + "($ref " + ref + ")");
      if (!t.ok()) return t.status();
      g_.nodes[slot].alts = {*t};
      return slot;
    }
    if (s.contains("allOf")) {
      QW_RETURN_IF_ERROR(only("allOf"));
      if (!s["allOf"].is_array() || s["allOf"].size() != 1)
        return err(path + ".allOf", "only an allOf of exactly one schema is supported");
      return compile(s["allOf"][0], path + ".allOf[0]");
    }
    if (s.contains("anyOf")) {
      QW_RETURN_IF_ERROR(only("anyOf"));
      const json& a = s["anyOf"];
      if (!a.is_array() || a.empty()) return err(path + ".anyOf", "must be a non-empty array");
      SchemaNode n{SchemaKind::AnyOf};
      for (size_t i = 0; i < a.size(); ++i) {
        auto c = compile(a[i], path + ".anyOf[" + std::to_string(i) + "]");
        if (!c.ok()) return c.status();
        n.alts.push_back(*c);
      }
      return add(std::move(n));
    }
    if (s.contains("const")) {
      SchemaNode n{SchemaKind::Literal};
      n.literals = {s["const"].dump()};
      return add(std::move(n));
    }
    if (s.contains("enum")) {
      const json& e = s["enum"];
      if (!e.is_array() || e.empty()) return err(path + ".enum", "must be a non-empty array");
      if (e.size() > kMaxSchemaLiterals)
        return err(path + ".enum", "more than " + std::to_string(kMaxSchemaLiterals) +
                                       " values is not supported");
      SchemaNode n{SchemaKind::Literal};
      std::set<std::string> seen;
      for (const auto& v : e)
        if (seen.insert(v.dump()).second) n.literals.push_back(v.dump());
      return add(std::move(n));
    }
    std::vector<std::string> types;
    if (s.contains("type")) {
      const json& t = s["type"];
      if (t.is_string()) types.push_back(t);
      else if (t.is_array() && !t.empty())
        for (const auto& x : t) {
          if (!x.is_string()) return err(path + ".type", "must be a string or a list of strings");
          types.push_back(x);
        }
      else return err(path + ".type", "must be a string or a list of strings");
    } else if (s.contains("properties") || s.contains("required") ||
               s.contains("additionalProperties")) {
      types = {"object"};
    } else if (s.contains("items") || s.contains("minItems") || s.contains("maxItems")) {
      types = {"array"};
    } else {
      return any();
    }
    if (types.size() == 1) return compile_type(s, types[0], path);
    SchemaNode n{SchemaKind::AnyOf};
    for (const auto& t : types) {
      auto c = compile_type(s, t, path);
      if (!c.ok()) return c.status();
      n.alts.push_back(*c);
    }
    return add(std::move(n));
  }

  Expected<uint32_t> compile_type(const json& s, const std::string& t, const std::string& path) {
    if (t == "string") return add(SchemaNode{SchemaKind::String});
    if (t == "number") return add(SchemaNode{SchemaKind::Number});
    if (t == "integer") return add(SchemaNode{SchemaKind::Integer});
    if (t == "boolean" || t == "null") {
      SchemaNode n{SchemaKind::Literal};
      n.literals = t == "null" ? std::vector<std::string>{"null"}
                               : std::vector<std::string>{"true", "false"};
      return add(std::move(n));
    }
    if (t == "array") return compile_array(s, path);
    if (t == "object") return compile_object(s, path);
    return err(path + ".type", "unknown type '" + t + "'");
  }

  Expected<uint32_t> compile_array(const json& s, const std::string& path) {
    SchemaNode n{SchemaKind::Array};
    if (s.contains("items")) {
      if (s["items"].is_array())
        return err(path + ".items", "tuple 'items' (a list of schemas) is not supported");
      auto c = compile(s["items"], path + ".items");
      if (!c.ok()) return c.status();
      n.items = *c;
    } else {
      n.items = any();
    }
    for (const char* k : {"minItems", "maxItems"}) {
      if (!s.contains(k)) continue;
      if (!s[k].is_number_unsigned())
        return err(path + "." + k, "must be a non-negative integer");
      const uint64_t v = s[k].get<uint64_t>();
      if (k[1] == 'i') {
        if (v > kMaxMinItems)
          return err(path + ".minItems", "more than " + std::to_string(kMaxMinItems) +
                                             " is not supported");
        n.min_items = uint32_t(v);
      } else {
        n.max_items = uint32_t(std::min<uint64_t>(v, UINT32_MAX));
      }
    }
    if (n.min_items > n.max_items) return err(path, "minItems is larger than maxItems");
    return add(std::move(n));
  }

  Expected<uint32_t> compile_object(const json& s, const std::string& path) {
    SchemaNode n{SchemaKind::Object};
    const json empty = json::object();
    const json& props = s.contains("properties") ? s["properties"] : empty;
    if (!props.is_object()) return err(path + ".properties", "must be an object");
    if (props.size() > kMaxSchemaProperties)
      return err(path + ".properties", "more than " + std::to_string(kMaxSchemaProperties) +
                                           " properties is not supported");
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) return err(path + ".required", "must be an array of strings");
      for (const auto& r : s["required"]) {
        if (!r.is_string()) return err(path + ".required", "must be an array of strings");
        if (!props.contains(r.get<std::string>()))
          return err(path + ".required", "names '" + r.get<std::string>() +
                                             "', which is not in 'properties'");
        required.insert(r.get<std::string>());
      }
    }
    for (auto it = props.begin(); it != props.end(); ++it) {
      auto c = compile(it.value(), path + ".properties." + it.key());
      if (!c.ok()) return c.status();
      n.prop_keys.push_back(json(it.key()).dump());
      n.prop_nodes.push_back(*c);
      n.prop_required.push_back(required.count(it.key()) > 0);
    }
    const bool has_ap = s.contains("additionalProperties");
    const json ap = has_ap ? s["additionalProperties"] : json(true);
    if (!ap.is_boolean() && !ap.is_object())
      return err(path + ".additionalProperties", "must be a boolean or a schema");
    if (props.empty() && !(ap.is_boolean() && !ap.get<bool>())) {
      n.free_map = true;
      if (ap.is_boolean()) {
        n.value_node = any();
      } else {
        auto c = compile(ap, path + ".additionalProperties");
        if (!c.ok()) return c.status();
        n.value_node = *c;
      }
    }
    return add(std::move(n));
  }

  Status compute_min_text() {
    std::vector<std::optional<std::string>> m(g_.nodes.size());
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t i = 0; i < g_.nodes.size(); ++i) {
        const SchemaNode& n = g_.nodes[i];
        std::optional<std::string> t;
        switch (n.kind) {
          case SchemaKind::String: t = "\"\""; break;
          case SchemaKind::Number:
          case SchemaKind::Integer: t = "0"; break;
          case SchemaKind::Literal:
            for (const auto& l : n.literals)
              if (!t || l.size() < t->size()) t = l;
            break;
          case SchemaKind::AnyOf:
            for (uint32_t a : n.alts)
              if (m[a] && (!t || m[a]->size() < t->size())) t = m[a];
            break;
          case SchemaKind::Array:
            if (n.min_items == 0) {
              t = "[]";
            } else if (m[n.items]) {
              std::string s = "[";
              for (uint32_t k = 0; k < n.min_items; ++k) s += (k ? "," : "") + *m[n.items];
              t = s + "]";
            }
            break;
          case SchemaKind::Object: {
            std::string s = "{";
            bool ok = true, first = true;
            for (size_t p = 0; p < n.prop_keys.size() && ok; ++p) {
              if (!n.prop_required[p]) continue;
              if (!m[n.prop_nodes[p]]) ok = false;
              else s += (first ? "" : ",") + n.prop_keys[p] + ":" + *m[n.prop_nodes[p]];
              first = false;
            }
            if (ok) t = s + "}";
            break;
          }
        }
        if (t && (!m[i] || t->size() < m[i]->size())) {
          m[i] = std::move(t);
          changed = true;
        }
      }
    }
    g_.min_text.resize(m.size());
    for (size_t i = 0; i < m.size(); ++i) {
      if (!m[i])
        return err(where_, "the schema has no finite instance (a required property or minItems "
                           "recurses without end)");
      g_.min_text[i] = std::move(*m[i]);
    }
    return Status::Ok();
  }

  const json& doc_;
  std::string where_;
  SchemaGraph g_;
  std::map<std::string, uint32_t> refs_;
  std::optional<uint32_t> any_;
};

}  // namespace

Expected<SchemaGraph> compile_json_schema(const json& schema, const std::string& where) {
  return Compiler(schema, where).run();
}

SchemaGraph any_object_schema() {
  auto g = compile_json_schema(json{{"type", "object"}}, "json_object");
  return std::move(*g);  // a fixed schema: cannot fail
}

}  // namespace qw

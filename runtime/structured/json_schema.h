// JSON Schema -> a small graph of value shapes the byte automaton (json_automaton.h) walks.
// The supported subset is what constrained decoding can enforce byte by byte without
// counters: type (one or a list), properties / required / additionalProperties, items /
// minItems / maxItems, enum, const, anyOf, allOf of one schema, local $ref ($defs,
// definitions, "#"), plus annotations (title, description, default, ...). Any other
// keyword is refused with an error that names it and where it is, so a client never gets
// output that silently ignores a constraint.
//
// Generation picks a subset of the valid instances, which is always valid:
//   - properties are written in their declared order, each at most once;
//   - an object with properties allows no other keys (additionalProperties: true or a
//     schema is honoured only for objects without properties);
//   - strings with enum/const are matched in their compact JSON spelling.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"

namespace qw {

enum class SchemaKind : uint8_t {
  Object,   // declared properties, or a free map (free_map) of value_node values
  Array,    // items, min_items..max_items
  String,   // any JSON string
  Number,   // any JSON number
  Integer,  // a JSON number without fraction or exponent
  Literal,  // one of `literals` (compact JSON texts): enum, const, true/false, null
  AnyOf,    // one of `alts`
};

struct SchemaNode {
  SchemaKind kind = SchemaKind::String;
  // Object
  std::vector<std::string> prop_keys;  // JSON-encoded names with their quotes: "\"city\""
  std::vector<uint32_t> prop_nodes;
  std::vector<bool> prop_required;
  bool free_map = false;
  uint32_t value_node = 0;  // free map values
  // Array
  uint32_t items = 0;
  uint32_t min_items = 0;
  uint32_t max_items = UINT32_MAX;
  // Literal
  std::vector<std::string> literals;
  // AnyOf
  std::vector<uint32_t> alts;
};

struct SchemaGraph {
  std::vector<SchemaNode> nodes;
  uint32_t root = 0;
  // Shortest JSON text of each node: what forced completion writes when the token budget
  // runs out. Every node has one (schemas without a finite instance are refused).
  std::vector<std::string> min_text;
};

// Limits that keep the automaton's state small.
inline constexpr size_t kMaxSchemaProperties = 64;  // per object (candidate bitmask)
inline constexpr size_t kMaxSchemaLiterals = 64;    // per enum

// `where` names the schema in errors, e.g. "response_format.json_schema.schema".
Expected<SchemaGraph> compile_json_schema(const nlohmann::ordered_json& schema, const std::string& where);
// Any JSON object (response_format json_object).
SchemaGraph any_object_schema();

}  // namespace qw

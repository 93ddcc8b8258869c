// Schemas shared by the structured-output tests (ordered: properties keep their order).
#pragma once
#include <nlohmann/json.hpp>

namespace qw::testing {

inline nlohmann::ordered_json person_schema() {
  return nlohmann::ordered_json::parse(R"({
    "type": "object",
    "properties": {
      "name": {"type": "string"},
      "age": {"type": "integer"},
      "email": {"type": ["string", "null"]},
      "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
      "role": {"enum": ["admin", "user", "guest"]},
      "address": {"type": "object",
                  "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                  "required": ["city"], "additionalProperties": false},
      "score": {"type": "number"},
      "active": {"type": "boolean"}
    },
    "required": ["name", "age", "role", "address", "active"],
    "additionalProperties": false})");
}

inline nlohmann::ordered_json shapes_schema() {
  return nlohmann::ordered_json::parse(R"({
    "$defs": {"pt": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                     "required": ["x", "y"], "additionalProperties": false}},
    "type": "object",
    "properties": {
      "shapes": {"type": "array", "minItems": 1, "items": {"anyOf": [
        {"type": "object", "properties": {"kind": {"const": "circle"}, "center": {"$ref": "#/$defs/pt"},
                                          "r": {"type": "number"}},
         "required": ["kind", "center", "r"], "additionalProperties": false},
        {"type": "object", "properties": {"kind": {"const": "poly"},
                                          "points": {"type": "array", "items": {"$ref": "#/$defs/pt"}, "minItems": 3}},
         "required": ["kind", "points"], "additionalProperties": false}]}},
      "n": {"enum": [1, 10, 100]},
      "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null}
    },
    "required": ["shapes", "n"],
    "additionalProperties": false})");
}

inline nlohmann::ordered_json tree_schema() {
  return nlohmann::ordered_json::parse(R"({
    "$defs": {"node": {"type": "object",
                       "properties": {"v": {"type": "integer"},
                                      "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                       "required": ["v"], "additionalProperties": false}},
    "$ref": "#/$defs/node"})");
}

}  // namespace qw::testing

// The JSON (schema) byte automaton: unsupported keywords are refused by name; random byte
// walks followed by the forced completion always give valid instances of the schema.
#include <doctest/doctest.h>

#include <random>

#include "schema_validator.h"
#include "structured/json_automaton.h"
#include "test_schemas.h"

using namespace qw;
using json = nlohmann::ordered_json;

namespace {

std::string compile_error(const json& schema) {
  auto g = compile_json_schema(schema, "schema");
  return g.ok() ? std::string() : g.status().message();
}

// Random valid bytes, then the automaton's own completion; returns the text.
std::string random_walk(JsonAutomaton& a, std::mt19937& rng, int steps) {
  JsonState s = a.initial(), next;
  std::string text;
  for (int i = 0; i < steps; ++i) {
    std::vector<uint8_t> ok;
    for (int b = 0; b < 256; ++b) {
      a.step(s, uint8_t(b), next);
      if (next.n) ok.push_back(uint8_t(b));
    }
    if (ok.empty()) break;  // done: nothing may follow
    const uint8_t b = ok[std::uniform_int_distribution<size_t>(0, ok.size() - 1)(rng)];
    a.step(s, b, next);
    s.copy_from(next);
    text += char(b);
  }
  const std::string tail = a.completion(s);
  for (char c : tail) {
    a.step(s, uint8_t(c), next);
    REQUIRE_MESSAGE(next.n > 0, "completion refused after: " << text);
    s.copy_from(next);
    text += c;
  }
  CHECK_MESSAGE(a.accepting(s), text);
  CHECK(a.completion(s).empty());
  return text;
}

}  // namespace

TEST_CASE("unsupported schema keywords are refused by name and place") {
  CHECK(compile_error(json::parse(R"({"type":"integer","minimum":3})")).find("'minimum'") !=
        std::string::npos);
  const std::string e = compile_error(
      json::parse(R"({"type":"object","properties":{"code":{"type":"string","pattern":"^a"}}})"));
  CHECK(e.find("'pattern'") != std::string::npos);
  CHECK(e.find("schema.properties.code") != std::string::npos);
  CHECK(compile_error(json::parse(R"({"oneOf":[{"type":"string"}]})")).find("'oneOf'") !=
        std::string::npos);
  CHECK(compile_error(json::parse(R"({"type":"object","required":["x"]})")).find("'x'") !=
        std::string::npos);
  CHECK(compile_error(json::parse(R"({"$ref":"http://x/y"})")).find("local $ref") !=
        std::string::npos);
  // A required self-reference has no finite instance.
  CHECK(compile_error(json::parse(R"({"$defs":{"a":{"type":"object","properties":{"a":{"$ref":"#/$defs/a"}},"required":["a"]}},"$ref":"#/$defs/a"})"))
            .find("no finite instance") != std::string::npos);
  CHECK(compile_error(testing::person_schema()).empty());
  CHECK(compile_error(json::parse(R"({"title":"x","description":"y","type":"string"})")).empty());
}

TEST_CASE("random byte walks complete into valid instances") {
  const std::vector<std::pair<std::string, json>> schemas = {
      {"person", testing::person_schema()},
      {"shapes", testing::shapes_schema()},
      {"tree", testing::tree_schema()},
      {"object", json{{"type", "object"}}},
      {"number", json{{"type", "number"}}},
      {"enum", json{{"enum", {1, 10, 100, "a", nullptr}}}}};
  std::mt19937 rng(1234);
  for (const auto& [name, schema] : schemas) {
    CAPTURE(name);
    auto g = compile_json_schema(schema, "schema");
    REQUIRE_MESSAGE(g.ok(), g.status().message());
    JsonAutomaton a(std::move(*g), "", "");
    for (int i = 0; i < 300; ++i) {
      const std::string text = random_walk(a, rng, int(rng() % 80));
      const json v = json::parse(text, nullptr, false);
      REQUIRE_MESSAGE(!v.is_discarded(), text);
      std::string why;
      CHECK_MESSAGE(testing::validate(v, schema, schema, why), text << ": " << why);
    }
  }
}

TEST_CASE("prefix and suffix frame the value; whitespace only inside it") {
  auto g = compile_json_schema(json::parse(R"({"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false})"), "s");
  REQUIRE(g.ok());
  JsonAutomaton a(std::move(*g), "<tool_call>\n", "\n</tool_call>");
  auto run = [&](const std::string& text) {
    JsonState s = a.initial(), next;
    for (char c : text) {
      a.step(s, uint8_t(c), next);
      if (!next.n) return -1;
      s.copy_from(next);
    }
    return a.done(s) ? 2 : a.accepting(s) ? 1 : 0;
  };
  CHECK(run("<tool_call>\n{\"a\": 12}\n</tool_call>") == 2);
  CHECK(run("<tool_call>\n{ \"a\" : -0 }") == 0);
  CHECK(run("<tool_call>\n {\"a\": 1}") == -1);         // no whitespace before the value
  CHECK(run("<tool_call>\n{\"b\": 1}") == -1);          // undeclared key
  CHECK(run("<tool_call>\n{}") == -1);                  // required key missing
  CHECK(run("<tool_call>\n{\"a\": 1.5}") == -1);        // integer
  CHECK(run("<tool_call>\n{\"a\": 01}") == -1);         // leading zero
  JsonState s = a.initial();
  CHECK(a.completion(s) == "<tool_call>\n{\"a\":0}\n</tool_call>");
}

TEST_CASE("strings: escapes and UTF-8 are checked byte by byte") {
  auto g = compile_json_schema(json{{"type", "string"}}, "s");
  REQUIRE(g.ok());
  JsonAutomaton a(std::move(*g), "", "");
  auto valid = [&](const std::string& text) {
    JsonState s = a.initial(), next;
    for (char c : text) {
      a.step(s, uint8_t(c), next);
      if (!next.n) return false;
      s.copy_from(next);
    }
    return a.accepting(s);
  };
  CHECK(valid("\"h\\u00e9\\n\\\"\""));
  CHECK(valid("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""));
  CHECK_FALSE(valid("\"\x01\""));            // raw control character
  CHECK_FALSE(valid("\"\\x\""));             // bad escape
  CHECK_FALSE(valid("\"\xc3\""));            // truncated sequence
  CHECK_FALSE(valid("\"\xed\xa0\x80\""));    // surrogate
  CHECK_FALSE(valid("\"\xc0\xaf\""));        // overlong
}

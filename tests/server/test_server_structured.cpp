// Structured output over HTTP on the tiny model (CPU): JSON mode and JSON Schema at
// temperature 1.0 (200 generations each, all valid), schema errors as 400s naming the
// keyword, forced tool calls (required / named) in whole and streamed responses.
#include <doctest/doctest.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "../structured/schema_validator.h"
#include "../structured/test_schemas.h"
#include "server_fixture.h"

using namespace qw;
using json = nlohmann::json;

namespace {

json chat(const std::string& text, int max_tokens) {
  return {{"messages", {{{"role", "user"}, {"content", text}}}},
          {"max_tokens", max_tokens},
          {"temperature", 1.0}};
}

// 200 choices: 20 requests of n=10 from 4 client threads at once.
std::vector<std::string> sample_200(testing::TestServer& s, const json& response_format) {
  std::vector<std::string> out;
  std::mutex mu;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      auto c = s.client();
      for (int k = 0; k < 5; ++k) {
        json b = chat("Give me JSON", 20 + 13 * ((t * 5 + k) % 5));
        b["n"] = 10;
        b["seed"] = t * 100 + k;
        b["response_format"] = response_format;
        auto r = c.Post("/v1/chat/completions", b.dump(), "application/json");
        REQUIRE(r);
        REQUIRE_MESSAGE(r->status == 200, r->body);
        const json j = json::parse(r->body);
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& ch : j["choices"]) out.push_back(ch["message"]["content"]);
      }
    });
  for (auto& t : ts) t.join();
  return out;
}

json weather_tools() {
  return json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
      "parameters": {"type": "object",
                     "properties": {"city": {"type": "string"},
                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                     "required": ["city", "unit"], "additionalProperties": false}}},
    {"type": "function", "function": {"name": "get_time",
      "parameters": {"type": "object", "properties": {"tz": {"type": "string"}},
                     "required": ["tz"]}}}])");
}

}  // namespace

TEST_CASE("json_object: 200 generations at temperature 1.0 are all JSON objects") {
  testing::TestServer s;
  const auto texts = sample_200(s, {{"type", "json_object"}});
  REQUIRE(texts.size() == 200);
  int valid = 0;
  for (const auto& t : texts) {
    const json v = json::parse(t, nullptr, false);
    const bool ok = !v.is_discarded() && v.is_object();
    CHECK_MESSAGE(ok, t);
    valid += ok;
  }
  CHECK(valid == 200);
  MESSAGE("json_object: " << valid << "/200 valid");
}

TEST_CASE("json_schema: 200 generations at temperature 1.0 are valid against the schema") {
  testing::TestServer s;
  const json schema = testing::person_schema();
  const auto texts = sample_200(
      s, {{"type", "json_schema"},
          {"json_schema", {{"name", "person"}, {"schema", schema}, {"strict", true}}}});
  REQUIRE(texts.size() == 200);
  int valid = 0;
  for (const auto& t : texts) {
    const json v = json::parse(t, nullptr, false);
    std::string why;
    const bool ok = !v.is_discarded() && testing::validate(v, schema, schema, why);
    CHECK_MESSAGE(ok, t << ": " << why);
    valid += ok;
  }
  CHECK(valid == 200);
  MESSAGE("json_schema: " << valid << "/200 valid");
}

TEST_CASE("response_format errors are 400s that name the problem") {
  testing::TestServer s;
  auto c = s.client();
  auto expect = [&](const json& rf, const std::string& needle, const std::string& param) {
    json b = chat("hi", 8);
    b["response_format"] = rf;
    auto r = c.Post("/v1/chat/completions", b.dump(), "application/json");
    REQUIRE(r);
    CHECK_MESSAGE(r->status == 400, r->body);
    const json j = json::parse(r->body);
    CHECK_MESSAGE(j["error"]["message"].get<std::string>().find(needle) != std::string::npos, r->body);
    CHECK(j["error"]["param"] == param);
  };
  expect({{"type", "json_schema"},
          {"json_schema", {{"name", "x"}, {"schema", {{"type", "object"},
                                                      {"properties", {{"age", {{"type", "integer"}, {"minimum", 0}}}}}}}}}},
         "'minimum'", "response_format.json_schema.schema");
  expect({{"type", "json_schema"}, {"json_schema", {{"name", "x"}, {"schema", {{"type", "string"}, {"format", "date"}}}}}},
         "'format'", "response_format.json_schema.schema");
  expect({{"type", "json_schema"}, {"json_schema", {{"name", "x"}}}}, "schema",
         "response_format.json_schema.schema");
  expect({{"type", "yaml"}}, "yaml", "response_format.type");
}

TEST_CASE("tool_choice required / named: one well-formed call, whole and streamed") {
  testing::TestServer s;
  auto c = s.client();
  const json tools = weather_tools();
  std::set<std::string> names_seen;
  for (int seed = 0; seed < 6; ++seed) {
    json b = chat("What's the weather in Paris?", 60);
    b["tools"] = tools;
    b["tool_choice"] = "required";
    b["seed"] = seed;
    auto r = c.Post("/v1/chat/completions", b.dump(), "application/json");
    REQUIRE(r);
    REQUIRE_MESSAGE(r->status == 200, r->body);
    const json j = json::parse(r->body);
    const json& ch = j["choices"][0];
    CHECK(ch["finish_reason"] == "tool_calls");
    CHECK(ch["message"]["content"].is_null());
    REQUIRE(ch["message"]["tool_calls"].size() == 1);
    const json& call = ch["message"]["tool_calls"][0];
    CHECK(call["type"] == "function");
    CHECK(call["id"].get<std::string>().rfind("call_", 0) == 0);
    const std::string name = call["function"]["name"];
    names_seen.insert(name);
    const json args = json::parse(call["function"]["arguments"].get<std::string>());
    const json& params = tools[name == "get_weather" ? 0 : 1]["function"]["parameters"];
    std::string why;
    CHECK_MESSAGE(testing::validate(args, params, params, why), args.dump() << " " << why);
  }
  CHECK(!names_seen.empty());

  // Named, streamed: the first tool_calls delta has id, type and name; fragments follow.
  json b = chat("Weather?", 60);
  b["tools"] = tools;
  b["tool_choice"] = {{"type", "function"}, {"function", {{"name", "get_weather"}}}};
  b["stream"] = true;
  auto r = c.Post("/v1/chat/completions", b.dump(), "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  std::string args, name, id, finish;
  int tool_chunks = 0;
  size_t pos = 0;
  while ((pos = r->body.find("data: ", pos)) != std::string::npos) {
    const size_t end = r->body.find("\n\n", pos);
    const std::string payload = r->body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (payload == "[DONE]") break;
    const json j = json::parse(payload);
    const json& ch = j["choices"][0];
    if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
    if (!ch["delta"].contains("tool_calls")) {
      CHECK_MESSAGE((!ch["delta"].contains("content") || ch["delta"]["content"] == ""), payload);
      continue;
    }
    const json& tc = ch["delta"]["tool_calls"][0];
    CHECK(tc["index"] == 0);
    if (tool_chunks++ == 0) {
      id = tc["id"];
      name = tc["function"]["name"];
      CHECK(tc["type"] == "function");
      CHECK(tc["function"]["arguments"] == "");
    } else {
      CHECK_FALSE(tc.contains("id"));
      args += tc["function"]["arguments"].get<std::string>();
    }
  }
  CHECK(name == "get_weather");
  CHECK(id.rfind("call_", 0) == 0);
  CHECK(tool_chunks >= 2);
  CHECK(finish == "tool_calls");
  const json a = json::parse(args);
  CHECK(a["unit"].is_string());
  CHECK(a["city"].is_string());
}

TEST_CASE("tools: validation errors, tool messages through the template, auto mode") {
  testing::TestServer s;
  auto c = s.client();
  auto status_of = [&](const json& b, std::string* body = nullptr) {
    auto r = c.Post("/v1/chat/completions", b.dump(), "application/json");
    REQUIRE(r);
    if (body) *body = r->body;
    return r->status;
  };
  std::string body;
  json b = chat("hi", 8);
  b["tool_choice"] = "required";
  CHECK(status_of(b, &body) == 400);
  CHECK(body.find("requires 'tools'") != std::string::npos);
  b["tools"] = weather_tools();
  b["tool_choice"] = {{"type", "function"}, {"function", {{"name", "nope"}}}};
  CHECK(status_of(b, &body) == 400);
  CHECK(body.find("nope") != std::string::npos);
  b["tool_choice"] = "sometimes";
  CHECK(status_of(b) == 400);
  b["tool_choice"] = "auto";
  b["tools"] = json::array({{{"type", "function"}, {"function", {{"description", "no name"}}}}});
  CHECK(status_of(b, &body) == 400);
  CHECK(body.find("tools[0].function.name") != std::string::npos);

  // A full round: assistant tool call, tool result, then the model answers (auto).
  json conv = {
      {"messages",
       {{{"role", "user"}, {"content", "Weather in Paris?"}},
        {{"role", "assistant"},
         {"content", nullptr},
         {"tool_calls",
          {{{"id", "call_1"}, {"type", "function"},
            {"function", {{"name", "get_weather"}, {"arguments", "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}}}}}},
        {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "{\"temp\": 21}"}}}},
      {"tools", weather_tools()},
      {"max_tokens", 16},
      {"temperature", 0}};
  auto r = c.Post("/v1/chat/completions", conv.dump(), "application/json");
  REQUIRE(r);
  CHECK_MESSAGE(r->status == 200, r->body);
  const json j = json::parse(r->body);
  const std::string reason = j["choices"][0]["finish_reason"];
  CHECK((reason == "stop" || reason == "length" || reason == "tool_calls"));
}

TEST_CASE("completions accept response_format (vLLM's extension), ignore_eos included") {
  testing::TestServer s;
  auto c = s.client();
  for (int seed = 0; seed < 8; ++seed) {
    const json b = {{"prompt", "Give me JSON:"},        {"max_tokens", 40},
                    {"temperature", 1.0},               {"seed", seed},
                    {"ignore_eos", seed % 2 == 0},
                    {"response_format", {{"type", "json_object"}}}};
    auto r = c.Post("/v1/completions", b.dump(), "application/json");
    REQUIRE(r);
    REQUIRE_MESSAGE(r->status == 200, r->body);
    const json j = json::parse(r->body);
    const std::string text = j["choices"][0]["text"];
    const json v = json::parse(text, nullptr, false);
    CHECK_MESSAGE((!v.is_discarded() && v.is_object()), text);
  }
  auto bad = c.Post("/v1/completions",
                    json{{"prompt", "x"}, {"response_format", {{"type", "yaml"}}}}.dump(),
                    "application/json");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK(json::parse(bad->body)["error"]["param"] == "response_format.type");
}

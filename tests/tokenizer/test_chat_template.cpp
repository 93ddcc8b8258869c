// Chat template goldens: Qwen2.5-Instruct's template rendered by transformers'
// apply_chat_template(tokenize=False) (tests/data/tokenizer/chat_goldens.json, made by
// tools/gen_tokenizer_goldens.py chat on the device machine).
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_support.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/py_json.h"

using nlohmann::ordered_json;

TEST_CASE("chat template: goldens from transformers apply_chat_template") {
  const qw::Tokenizer& tok = qw::test::qwen25_tokenizer();
  std::ifstream in(qw::test::data_dir() + "/tokenizer/chat_goldens.json");
  REQUIRE(in.good());
  const ordered_json goldens = ordered_json::parse(in);
  MESSAGE("goldens from " << goldens["meta"].dump());
  size_t n = 0;
  for (const ordered_json& c : goldens["cases"]) {
    ++n;
    const std::string name =
        c["name"].get<std::string>() + (c["add_generation_prompt"].get<bool>() ? " +gen" : "");
    CAPTURE(name);
    auto r = tok.render_chat(c["messages"], c["tools"], c["add_generation_prompt"].get<bool>());
    if (c.contains("error")) {
      CHECK_MESSAGE(!r.ok(), "HF failed with " << c["error"].get<std::string>());
    } else {
      REQUIRE_MESSAGE(r.ok(), r.status().message());
      CHECK(*r == c["rendered"].get<std::string>());
    }
  }
  CHECK(n >= 40);
}

TEST_CASE("chat template: only Qwen2.5's template is rendered; others are refused clearly") {
  // tests/data's tokenizer_config.json carries Qwen3's template.
  const qw::Tokenizer& qwen3 = qw::test::qwen_tokenizer();
  CHECK(!qwen3.chat_template().empty());
  auto r =
      qwen3.render_chat(ordered_json::parse(R"([{"role":"user","content":"hi"}])"), nullptr, true);
  REQUIRE(!r.ok());
  CHECK(r.status().message().find("Qwen2.5") != std::string::npos);
  // chat_template.jinja in the checkpoint dir wins over tokenizer_config.json.
  CHECK(qw::is_qwen25_chat_template(qw::test::qwen25_tokenizer().chat_template()));
}

TEST_CASE("chat template: render_chat_json keeps key order and renders a tool call") {
  const qw::Tokenizer& tok = qw::test::qwen25_tokenizer();
  auto r = tok.render_chat_json(
      R"([{"role":"user","content":"hi"},{"role":"assistant","content":null,
          "tool_calls":[{"function":{"name":"f","arguments":{"z":1,"a":[1.0,"é"]}}}]}])",
      R"([{"type":"function","function":{"name":"f","parameters":{}}}])", false);
  REQUIRE(r.ok());
  CHECK(r->find(R"({"type": "function", "function": {"name": "f", "parameters": {}}})") !=
        std::string::npos);
  CHECK(r->find(R"({"name": "f", "arguments": {"z": 1, "a": [1.0, "é"]}})") != std::string::npos);
  CHECK(!tok.render_chat_json("[", "", false).ok());
}

TEST_CASE("py_json: floats print as Python's repr, strings as json.dumps(ensure_ascii=False)") {
  const std::pair<double, const char*> floats[] = {
      {1.0, "1.0"},
      {1e16, "1e+16"},
      {1e15, "1000000000000000.0"},
      {0.0001, "0.0001"},
      {1e-05, "1e-05"},
      {-0.0, "-0.0"},
      {2.5e-07, "2.5e-07"},
      {123.456, "123.456"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {5e-324, "5e-324"},
      {0.1, "0.1"},
      {100.0, "100.0"},
      {1234567890123456.7, "1234567890123456.8"},
      {12345678901234567.0, "1.2345678901234568e+16"},
      {0.00012345, "0.00012345"},
      {1.5e300, "1.5e+300"},
      {-3.25, "-3.25"}};
  for (const auto& [x, want] : floats) CHECK(qw::python_float_repr(x) == want);
  CHECK(qw::python_json_dumps(ordered_json("a\"b\\c\n\t\x01\x7f é")) ==
        "\"a\\\"b\\\\c\\n\\t\\u0001\x7f é\"");
  CHECK(qw::python_json_dumps(ordered_json::parse(R"({"b":[],"a":{},"c":[null,true,-5]})")) ==
        R"({"b": [], "a": {}, "c": [null, true, -5]})");
}

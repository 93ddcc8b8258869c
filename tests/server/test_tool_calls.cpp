// <tool_call> parsing of model output (unit): well-formed, several, mixed with content,
// malformed and unterminated blocks (returned as content), and streaming in small pieces.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "server/tool_calls.h"

using namespace qw;

namespace {
// Feeds text in pieces of `step` bytes and collects what the parser gives out.
ParsedToolOutput stream(const std::string& text, size_t step) {
  ToolCallParser p;
  ParsedToolOutput out;
  auto take = [&](std::vector<ToolCallParser::Piece> pieces) {
    for (auto& piece : pieces) {
      if (piece.call) out.calls.push_back(*piece.call);
      else out.content += piece.content;
    }
  };
  for (size_t i = 0; i < text.size(); i += step) take(p.push(text.substr(i, step)));
  take(p.finish());
  return out;
}
}  // namespace

TEST_CASE("a well-formed tool call becomes a call with string arguments") {
  const auto r = parse_tool_calls(
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>");
  REQUIRE(r.calls.size() == 1);
  CHECK(r.calls[0].name == "get_weather");
  CHECK(r.calls[0].arguments == R"({"city":"Paris","days":2})");  // key order kept
  CHECK(r.calls[0].id.rfind("call_", 0) == 0);
  CHECK(r.calls[0].id.size() == 29);
  CHECK(r.content.empty());
}

TEST_CASE("several calls, content before them, whitespace between") {
  const auto r = parse_tool_calls(
      "Let me check.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"b\", \"arguments\": \"{\\\"x\\\": 1}\"}\n</tool_call>\n");
  REQUIRE(r.calls.size() == 2);
  CHECK(r.calls[0].name == "a");
  CHECK(r.calls[0].arguments == "{}");
  CHECK(r.calls[1].name == "b");
  CHECK(r.calls[1].arguments == "{\"x\": 1}");  // already a string: passed through
  CHECK(r.calls[0].id != r.calls[1].id);
  CHECK(r.content == "Let me check.");
}

TEST_CASE("malformed or unterminated tool calls are returned as plain content") {
  for (const std::string text :
       {"<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": }\n</tool_call>",  // bad JSON
        "<tool_call>\n{\"arguments\": {}}\n</tool_call>",                        // no name
        "<tool_call>\n[1, 2]\n</tool_call>",                                     // not an object
        "<tool_call>\n{\"name\": 3}\n</tool_call>",                              // name not a string
        "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}",                     // never closed
        "plain text with a < sign and <tool_ but no call"}) {
    CAPTURE(text);
    const auto r = parse_tool_calls(text);
    CHECK(r.calls.empty());
    CHECK(r.content == text);
    const auto s = stream(text, 3);
    CHECK(s.calls.empty());
    CHECK(s.content == text);
  }
  // One good call and one bad: the bad one stays text.
  const auto r = parse_tool_calls(
      "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>oops</tool_call>");
  REQUIRE(r.calls.size() == 1);
  CHECK(r.content == "\n<tool_call>oops</tool_call>");
}

TEST_CASE("streaming in any piece size gives the same calls and content") {
  const std::string text =
      "Sure <b>bold</b>!\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n"
      "</tool_call>";
  for (size_t step : {1, 2, 5, 11, 1000}) {
    CAPTURE(step);
    const auto s = stream(text, step);
    REQUIRE(s.calls.size() == 1);
    CHECK(s.calls[0].name == "get_weather");
    CHECK(nlohmann::json::parse(s.calls[0].arguments)["city"] == "Zürich");
    CHECK(s.content == "Sure <b>bold</b>!");
  }
  // Text that might start a tag is held, then released when it does not; trailing
  // whitespace waits for what follows (dropped before a call, kept before text).
  ToolCallParser p;
  auto a = p.push("hello <tool");
  REQUIRE(a.size() == 1);
  CHECK(a[0].content == "hello");
  auto b = p.push("box>");
  REQUIRE(b.size() == 1);
  CHECK(b[0].content == " <toolbox>");
}

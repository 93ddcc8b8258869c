// Qwen2.5 tool calls in model output: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`
// blocks become OpenAI tool_calls; text outside the blocks stays content. A block that is
// not a JSON object with a string "name" (or is never closed) is given back as content,
// byte for byte, so nothing the model wrote is lost.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qw {

struct ToolCall {
  std::string id;         // "call_<24 hex>"
  std::string name;
  std::string arguments;  // a JSON text (OpenAI sends arguments as a string)
};

inline constexpr std::string_view kToolCallOpen = "<tool_call>";
inline constexpr std::string_view kToolCallClose = "</tool_call>";

// Incremental: push text as it streams, get content and finished calls in order. Text that
// may be the start of "<tool_call>" is held until it is known; whitespace around calls is
// dropped (the template puts newlines between blocks).
class ToolCallParser {
 public:
  struct Piece {
    std::string content;          // when !call
    std::optional<ToolCall> call;
  };
  std::vector<Piece> push(std::string_view text);
  std::vector<Piece> finish();
  int calls() const { return calls_; }

 private:
  void emit_content(std::string text, std::vector<Piece>& out);
  void drain(bool final, std::vector<Piece>& out);

  std::string buf_;
  bool in_call_ = false;
  std::string held_ws_;  // whitespace not yet known to be content
  int calls_ = 0;
};

// Whole-output form: content (trimmed; empty when only calls) and the calls.
struct ParsedToolOutput {
  std::string content;
  std::vector<ToolCall> calls;
};
ParsedToolOutput parse_tool_calls(std::string_view text);

// One block's JSON -> a call, or nullopt if malformed.
std::optional<ToolCall> parse_tool_call_body(std::string_view body);

std::string new_tool_call_id();

}  // namespace qw

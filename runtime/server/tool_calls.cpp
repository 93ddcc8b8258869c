#include "server/tool_calls.h"

#include <cstdio>
#include <random>

namespace qw {

using ojson = nlohmann::ordered_json;

namespace {
bool all_ws(std::string_view s) {
  return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}
// Length of the longest tail of s that is a proper prefix of tag.
size_t partial_tag_tail(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  return 0;
}
}  // namespace

std::string new_tool_call_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[40];
  std::snprintf(buf, sizeof buf, "call_%016llx%08llx", (unsigned long long)rng(),
                (unsigned long long)(rng() & 0xffffffffull));
  return buf;
}

std::optional<ToolCall> parse_tool_call_body(std::string_view body) {
  const ojson j = ojson::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j["name"].is_string())
    return std::nullopt;
  ToolCall c;
  c.id = new_tool_call_id();
  c.name = j["name"].get<std::string>();
  if (!j.contains("arguments") || j["arguments"].is_null()) {
    c.arguments = "{}";
  } else if (j["arguments"].is_string()) {
    c.arguments = j["arguments"].get<std::string>();  // some models quote the arguments
  } else if (j["arguments"].is_object()) {
    c.arguments = j["arguments"].dump();
  } else {
    return std::nullopt;
  }
  return c;
}

void ToolCallParser::emit_content(std::string text, std::vector<Piece>& out) {
  if (text.empty()) return;
  if (all_ws(text)) {
    held_ws_ += text;
    return;
  }
  // Trailing whitespace waits: before a call it is dropped, before more text it is kept.
  const size_t end = text.find_last_not_of(" \t\r\n") + 1;
  out.push_back(Piece{held_ws_ + text.substr(0, end), std::nullopt});
  held_ws_ = text.substr(end);
}

void ToolCallParser::drain(bool final, std::vector<Piece>& out) {
  for (;;) {
    if (!in_call_) {
      const size_t at = buf_.find(kToolCallOpen);
      if (at == std::string::npos) {
        const size_t keep = final ? 0 : partial_tag_tail(buf_, kToolCallOpen);
        emit_content(buf_.substr(0, buf_.size() - keep), out);
        buf_.erase(0, buf_.size() - keep);
        return;
      }
      emit_content(buf_.substr(0, at), out);
      buf_.erase(0, at + kToolCallOpen.size());
      in_call_ = true;
    }
    const size_t end = buf_.find(kToolCallClose);
    if (end == std::string::npos) {
      if (final) {  // never closed: give the text back
        held_ws_.clear();
        out.push_back(Piece{std::string(kToolCallOpen) + buf_, std::nullopt});
        buf_.clear();
        in_call_ = false;
      }
      return;
    }
    const std::string body = buf_.substr(0, end);
    buf_.erase(0, end + kToolCallClose.size());
    in_call_ = false;
    if (auto call = parse_tool_call_body(body)) {
      held_ws_.clear();
      ++calls_;
      out.push_back(Piece{"", std::move(call)});
    } else {
      out.push_back(Piece{held_ws_ + std::string(kToolCallOpen) + body +
                              std::string(kToolCallClose),
                          std::nullopt});
      held_ws_.clear();
    }
  }
}

std::vector<ToolCallParser::Piece> ToolCallParser::push(std::string_view text) {
  buf_ += text;
  std::vector<Piece> out;
  drain(false, out);
  return out;
}

std::vector<ToolCallParser::Piece> ToolCallParser::finish() {
  std::vector<Piece> out;
  drain(true, out);
  if (!held_ws_.empty() && calls_ == 0) out.push_back(Piece{held_ws_, std::nullopt});
  held_ws_.clear();
  return out;
}

ParsedToolOutput parse_tool_calls(std::string_view text) {
  ToolCallParser p;
  ParsedToolOutput r;
  auto take = [&](std::vector<ToolCallParser::Piece> pieces) {
    for (auto& piece : pieces) {
      if (piece.call) r.calls.push_back(std::move(*piece.call));
      else r.content += piece.content;
    }
  };
  take(p.push(text));
  take(p.finish());
  if (r.calls.empty()) r.content = std::string(text);  // no call: the text as it was
  return r;
}

}  // namespace qw

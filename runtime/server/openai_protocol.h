// OpenAI-compatible request parsing/validation and response shapes for /v1/chat/completions
// and /v1/completions. No I/O here: bodies in, JSON out.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "core/model_config.h"
#include "server/tool_calls.h"
#include "serving/sequence.h"
#include "structured/grammar_factory.h"
#include "tokenizer/tokenizer.h"

namespace qw {

// An OpenAI error body: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;
  std::string code;
  nlohmann::json body() const;
};

struct ApiContext {
  const Tokenizer* tokenizer = nullptr;
  const ModelConfig* config = nullptr;
  const GenerationDefaults* defaults = nullptr;
  std::string model_name;
  int64_t max_context = 0;
  // Special-token text inside messages is tokenized as plain text unless this is set.
  bool allow_special_tokens_in_messages = false;
  int max_n = 16;
  // Grammars for response_format / forced tool calls (shared by copies of the context).
  std::shared_ptr<GrammarFactory> grammars = std::make_shared<GrammarFactory>();
};

struct ParsedRequest {
  bool chat = true;
  RequestParams params;
  int n = 1;
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;  // chat: logprobs=true; completions: logprobs=N
  int top_logprobs = 0;
  bool echo = false;
  std::string prompt_text;  // completions echo
  bool parse_tools = false;  // tools offered and tool_choice not "none": parse <tool_call>
};

std::variant<ParsedRequest, ApiError> parse_chat_request(const std::string& body,
                                                          const ApiContext& ctx);
std::variant<ParsedRequest, ApiError> parse_completion_request(const std::string& body,
                                                                const ApiContext& ctx);

// Tokens of a rendered chat prompt; message contents never produce special tokens unless
// the context allows it.
std::vector<int32_t> encode_chat_prompt(const Tokenizer& tok, const nlohmann::ordered_json& messages,
                                        const std::string& rendered, bool allow_special_in_content);

// Response pieces.
struct ChoiceResult {
  std::string text;
  std::string finish_reason;
  std::vector<int32_t> tokens;
  std::vector<SampleResult> samples;
  std::vector<ToolCall> tool_calls;
};
nlohmann::ordered_json logprobs_json(const Tokenizer& tok, bool chat,
                                     const std::vector<int32_t>& tokens,
                                     const std::vector<SampleResult>& samples, int top_n);
nlohmann::ordered_json completion_response(const ParsedRequest& req, const ApiContext& ctx,
                                           const std::string& id, int64_t created,
                                           const std::vector<ChoiceResult>& choices,
                                           int64_t prompt_tokens, int64_t completion_tokens);
nlohmann::ordered_json stream_chunk(const ParsedRequest& req, const ApiContext& ctx,
                                    const std::string& id, int64_t created, int index,
                                    const std::string* role, const std::string& text,
                                    const std::string* finish_reason,
                                    const nlohmann::ordered_json* logprobs);
// A streamed tool call as OpenAI sends it: a chunk with index, id, type and the name (empty
// arguments), then chunks with argument fragments.
std::vector<nlohmann::ordered_json> tool_call_chunks(const ParsedRequest& req,
                                                     const ApiContext& ctx, const std::string& id,
                                                     int64_t created, int index, int call_index,
                                                     const ToolCall& call);
nlohmann::ordered_json usage_json(int64_t prompt_tokens, int64_t completion_tokens);

}  // namespace qw

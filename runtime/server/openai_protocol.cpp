#include "server/openai_protocol.h"

#include <algorithm>
#include <set>

namespace qw {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

json ApiError::body() const {
  json e = {{"message", message}, {"type", type}};
  e["param"] = param.empty() ? json(nullptr) : json(param);
  e["code"] = code.empty() ? json(nullptr) : json(code);
  return json{{"error", e}};
}

namespace {

ApiError bad(const std::string& param, const std::string& message) {
  return ApiError{400, message, "invalid_request_error", param, ""};
}

// Reads and type-checks optional fields; the first error sticks.
class Fields {
 public:
  explicit Fields(const ojson& j) : j_(j) {}
  bool has(const char* k) const { return j_.contains(k) && !j_[k].is_null(); }
  template <typename T>
  void number(const char* k, T& out, double lo, double hi) {
    if (!has(k) || err) return;
    const auto& v = j_[k];
    if (!v.is_number() || (std::is_integral_v<T> && !v.is_number_integer())) {
      err = bad(k, std::string("'") + k + "' must be " +
                       (std::is_integral_v<T> ? "an integer" : "a number"));
      return;
    }
    const double d = v.get<double>();
    if (d < lo || d > hi) {
      char m[160];
      std::snprintf(m, sizeof m, "'%s' must be between %g and %g, got %g", k, lo, hi, d);
      err = bad(k, m);
      return;
    }
    out = v.get<T>();
  }
  void boolean(const char* k, bool& out) {
    if (!has(k) || err) return;
    if (!j_[k].is_boolean()) err = bad(k, std::string("'") + k + "' must be a boolean");
    else out = j_[k].get<bool>();
  }
  std::optional<ApiError> err;

 private:
  const ojson& j_;
};

std::optional<ApiError> check_known_fields(const ojson& j, const std::set<std::string>& known) {
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.count(it.key()))
      return bad(it.key(), "Unrecognized request argument supplied: " + it.key());
  return std::nullopt;
}

const std::set<std::string> kCommon = {
    "model",         "max_tokens",        "temperature", "top_p",   "top_k",
    "repetition_penalty", "presence_penalty", "frequency_penalty", "seed", "stop",
    "n",             "stream",            "stream_options", "user", "logit_bias",
    "logprobs",      "ignore_eos",        "min_tokens"};

std::optional<ApiError> parse_common(const ojson& j, const ApiContext& ctx, ParsedRequest& r,
                                     int64_t& max_tokens) {
  if (j.contains("model") && !j["model"].is_null()) {
    if (!j["model"].is_string()) return bad("model", "'model' must be a string");
    if (j["model"].get<std::string>() != ctx.model_name)
      return ApiError{404, "The model `" + j["model"].get<std::string>() + "` does not exist.",
                      "NotFoundError", "model", "model_not_found"};
  }
  const GenerationDefaults& g = *ctx.defaults;
  SamplingParams& s = r.params.sampling;
  s = SamplingParams::from_defaults(g);
  Fields f(j);
  f.number("temperature", s.temperature, 0.0, 2.0);
  f.number("top_p", s.top_p, 1e-9, 1.0);
  f.number("top_k", s.top_k, -1.0, 1e9);
  if (s.top_k < 0) s.top_k = 0;  // vLLM: -1 disables
  f.number("repetition_penalty", s.repetition_penalty, 1e-6, 100.0);
  f.number("presence_penalty", s.presence_penalty, -2.0, 2.0);
  f.number("frequency_penalty", s.frequency_penalty, -2.0, 2.0);
  int64_t seed = -1;
  f.number("seed", seed, -9.2e18, 9.2e18);
  if (f.has("seed")) s.seed = uint64_t(seed);
  else s.seed = std::random_device{}();
  f.number("n", r.n, 1.0, double(ctx.max_n));
  f.boolean("stream", r.stream);
  f.number("max_tokens", max_tokens, 1.0, 1e12);
  bool ignore_eos = false;
  f.boolean("ignore_eos", ignore_eos);
  if (f.err) return f.err;
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    const auto& so = j["stream_options"];
    if (!so.is_object()) return bad("stream_options", "'stream_options' must be an object");
    if (!r.stream) return bad("stream_options", "'stream_options' is only allowed with stream=true");
    if (so.contains("include_usage")) {
      if (!so["include_usage"].is_boolean())
        return bad("stream_options.include_usage", "'include_usage' must be a boolean");
      r.include_usage = so["include_usage"].get<bool>();
    }
  }
  if (j.contains("stop") && !j["stop"].is_null()) {
    const auto& st = j["stop"];
    if (st.is_string()) {
      r.params.stop.push_back(st.get<std::string>());
    } else if (st.is_array()) {
      for (const auto& e : st) {
        if (!e.is_string()) return bad("stop", "'stop' must be a string or a list of strings");
        r.params.stop.push_back(e.get<std::string>());
      }
    } else {
      return bad("stop", "'stop' must be a string or a list of strings");
    }
    r.params.stop.erase(std::remove(r.params.stop.begin(), r.params.stop.end(), std::string()),
                        r.params.stop.end());
  }
  if (j.contains("logit_bias") && !j["logit_bias"].is_null() &&
      !(j["logit_bias"].is_object() && j["logit_bias"].empty()))
    return bad("logit_bias", "'logit_bias' is not supported");
  if (!ignore_eos) {
    for (int64_t id : g.eos_token_ids) r.params.eos_ids.push_back(id);
    for (int32_t id : ctx.tokenizer->eos_ids())
      if (std::find(r.params.eos_ids.begin(), r.params.eos_ids.end(), id) == r.params.eos_ids.end())
        r.params.eos_ids.push_back(id);
  }
  return std::nullopt;
}

std::optional<ApiError> finish_lengths(ParsedRequest& r, const ApiContext& ctx, int64_t max_tokens,
                                       int64_t default_max, const char* where) {
  const int64_t np = int64_t(r.params.prompt.size());
  if (np == 0) return bad(r.chat ? "messages" : "prompt", "the prompt is empty");
  if (max_tokens <= 0) max_tokens = default_max > 0 ? default_max : ctx.max_context - np;
  if (np + max_tokens > ctx.max_context) {
    char m[400];
    std::snprintf(m, sizeof m,
                  "This model's maximum context length is %lld tokens. However, you requested "
                  "%lld tokens (%lld in the %s, %lld in the completion). Please reduce the length "
                  "of the %s or completion.",
                  (long long)ctx.max_context, (long long)(np + max_tokens), (long long)np, where,
                  (long long)max_tokens, where);
    return ApiError{400, m, "invalid_request_error", r.chat ? "messages" : "prompt",
                    "context_length_exceeded"};
  }
  r.params.max_new_tokens = max_tokens;
  if (Status s = r.params.sampling.validate(); !s.ok()) return bad("", s.message());
  return std::nullopt;
}

// Content as a string: a string, null, or a list of {"type":"text","text":...} parts.
std::optional<std::string> content_text(const ojson& c) {
  if (c.is_null()) return std::string();
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) return std::nullopt;
  std::string out;
  for (const auto& p : c) {
    if (!p.is_object() || p.value("type", "") != "text" || !p.contains("text") ||
        !p["text"].is_string())
      return std::nullopt;
    out += p["text"].get<std::string>();
  }
  return out;
}

std::optional<ojson> parse_json(const std::string& body, ApiError& err) {
  ojson j = ojson::parse(body, nullptr, false);
  if (j.is_discarded()) {
    err = bad("", "Request body is not valid JSON");
    return std::nullopt;
  }
  if (!j.is_object()) {
    err = bad("", "Request body must be a JSON object");
    return std::nullopt;
  }
  return j;
}

// response_format: text | json_object | json_schema (grammar-constrained decoding).
std::optional<ApiError> parse_response_format(const ojson& rf, const ApiContext& ctx,
                                              ParsedRequest& r) {
  if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string())
    return bad("response_format", "'response_format' must be an object with a 'type'");
  const std::string type = rf["type"];
  if (type == "text") return std::nullopt;
  if (type == "json_object") {
    auto g = ctx.grammars->json_object(*ctx.tokenizer);
    if (!g.ok()) return bad("response_format", g.status().message());
    r.params.grammar = *g;
    return std::nullopt;
  }
  if (type != "json_schema")
    return bad("response_format.type", "response_format type '" + type +
                                           "' is not supported (text, json_object, json_schema)");
  if (!rf.contains("json_schema") || !rf["json_schema"].is_object())
    return bad("response_format.json_schema",
               "'response_format.json_schema' must be an object with a 'schema'");
  const ojson& js = rf["json_schema"];
  if (js.contains("name") && !js["name"].is_string())
    return bad("response_format.json_schema.name", "'name' must be a string");
  if (js.contains("strict") && !js["strict"].is_null() && !js["strict"].is_boolean())
    return bad("response_format.json_schema.strict", "'strict' must be a boolean");
  if (!js.contains("schema") || !(js["schema"].is_object() || js["schema"].is_boolean()))
    return bad("response_format.json_schema.schema",
               "'response_format.json_schema.schema' must be a JSON Schema object");
  auto g = ctx.grammars->json_schema(*ctx.tokenizer, js["schema"],
                                     "response_format.json_schema.schema");
  if (!g.ok()) return bad("response_format.json_schema.schema", g.status().message());
  r.params.grammar = *g;
  return std::nullopt;
}

// tools + tool_choice. The tools go to the chat template (out); "required" or a named
// function constrains the reply to one well-formed <tool_call> block.
std::optional<ApiError> parse_tools(const ojson& j, const ApiContext& ctx, ParsedRequest& r,
                                    ojson& out) {
  std::string choice = "auto", named;
  const bool has_choice = j.contains("tool_choice") && !j["tool_choice"].is_null();
  if (has_choice) {
    const ojson& tc = j["tool_choice"];
    if (tc.is_string()) {
      choice = tc.get<std::string>();
      if (choice != "none" && choice != "auto" && choice != "required")
        return bad("tool_choice", "'tool_choice' must be none, auto, required or "
                                  "{\"type\": \"function\", \"function\": {\"name\": ...}}");
    } else if (tc.is_object() && tc.value("type", "") == "function" && tc.contains("function") &&
               tc["function"].is_object() && tc["function"].contains("name") &&
               tc["function"]["name"].is_string()) {
      choice = "named";
      named = tc["function"]["name"].get<std::string>();
    } else {
      return bad("tool_choice", "'tool_choice' must be none, auto, required or "
                                "{\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
  }
  const bool has_tools = j.contains("tools") && !j["tools"].is_null();
  if (has_tools && !j["tools"].is_array()) return bad("tools", "'tools' must be an array");
  const ojson tools = has_tools ? j["tools"] : ojson::array();
  std::vector<std::string> names;
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string p = "tools[" + std::to_string(i) + "]";
    const ojson& t = tools[i];
    if (!t.is_object() || t.value("type", "") != "function" || !t.contains("function") ||
        !t["function"].is_object())
      return bad(p, p + " must be {\"type\": \"function\", \"function\": {...}}");
    const ojson& fn = t["function"];
    if (!fn.contains("name") || !fn["name"].is_string() || fn["name"].get<std::string>().empty())
      return bad(p + ".function.name", p + ".function.name must be a non-empty string");
    if (fn.contains("parameters") && !fn["parameters"].is_null() && !fn["parameters"].is_object())
      return bad(p + ".function.parameters", p + ".function.parameters must be a JSON Schema object");
    names.push_back(fn["name"].get<std::string>());
  }
  if (choice == "none") return std::nullopt;
  if ((choice == "required" || choice == "named") && tools.empty())
    return bad("tool_choice", "tool_choice '" + (choice == "named" ? named : choice) +
                                  "' requires 'tools'");
  if (choice == "named" && std::find(names.begin(), names.end(), named) == names.end())
    return bad("tool_choice.function.name", "tool_choice names '" + named +
                                                "', which is not among the tools");
  out = tools;
  r.parse_tools = !tools.empty();
  if (choice == "auto") return std::nullopt;
  if (r.params.grammar)
    return bad("tool_choice", "tool_choice '" + choice +
                                  "' cannot be combined with a JSON response_format");
  // One <tool_call> block: {"name": <a chosen tool>, "arguments": <its parameters>}.
  ojson alts = ojson::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    if (choice == "named" && names[i] != named) continue;
    const ojson& fn = tools[i]["function"];
    ojson params = fn.contains("parameters") && fn["parameters"].is_object()
                       ? fn["parameters"] : ojson{{"type", "object"}};
    const std::string where = "tools[" + std::to_string(i) + "].function.parameters";
    if (auto c = compile_json_schema(params, where); !c.ok()) {
      // Strict functions promise schema-exact arguments; others fall back to any object.
      if (fn.value("strict", false)) return bad(where, c.status().message());
      params = ojson{{"type", "object"}};
    }
    ojson props = ojson::object();
    props["name"] = ojson{{"const", names[i]}};
    props["arguments"] = params;
    alts.push_back(ojson{{"type", "object"},
                         {"properties", props},
                         {"required", {"name", "arguments"}},
                         {"additionalProperties", false}});
  }
  const ojson schema = alts.size() == 1 ? alts[0] : ojson{{"anyOf", alts}};
  auto g = ctx.grammars->json_schema(*ctx.tokenizer, schema, "tools",
                                     std::string(kToolCallOpen) + "\n",
                                     "\n" + std::string(kToolCallClose));
  if (!g.ok()) return bad("tools", g.status().message());
  r.params.grammar = *g;
  return std::nullopt;
}

}  // namespace

std::vector<int32_t> encode_chat_prompt(const Tokenizer& tok, const ojson& messages,
                                        const std::string& rendered, bool allow_special_in_content) {
  if (allow_special_in_content) return tok.encode(rendered, true);
  // Only when some content spells a special token do we encode contents apart (as plain
  // text); otherwise the ids are exactly HF's for the rendered prompt.
  bool injected = false;
  for (const auto& m : messages) {
    const auto text = content_text(m.contains("content") ? m["content"] : ojson());
    if (!text) continue;
    for (int32_t id : tok.encode(*text, true))
      if (tok.is_special(id)) injected = true;
  }
  if (!injected) return tok.encode(rendered, true);
  std::vector<int32_t> out;
  size_t pos = 0;
  for (const auto& m : messages) {
    const auto text = content_text(m.contains("content") ? m["content"] : ojson());
    if (!text || text->empty()) continue;
    const size_t at = rendered.find(*text, pos);
    if (at == std::string::npos) continue;
    tok.encode_append(std::string_view(rendered).substr(pos, at - pos), true, out);
    tok.encode_append(*text, false, out);
    pos = at + text->size();
  }
  tok.encode_append(std::string_view(rendered).substr(pos), true, out);
  return out;
}

// A grammar ends the reply itself or through eos; never without one (ignore_eos).
static void keep_eos_for_grammar(ParsedRequest& r, const ApiContext& ctx) {
  if (r.params.grammar && r.params.eos_ids.empty())
    for (int32_t id : ctx.tokenizer->eos_ids()) r.params.eos_ids.push_back(id);
}

std::variant<ParsedRequest, ApiError> parse_chat_request(const std::string& body,
                                                          const ApiContext& ctx) {
  ApiError err;
  auto j = parse_json(body, err);
  if (!j) return err;
  std::set<std::string> known = kCommon;
  known.insert({"messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice",
                "parallel_tool_calls", "response_format", "metadata", "store"});
  if (auto e = check_known_fields(*j, known)) return *e;
  ParsedRequest r;
  r.chat = true;
  int64_t max_tokens = 0;
  if (auto e = parse_common(*j, ctx, r, max_tokens)) return *e;
  Fields f(*j);
  int64_t mct = 0;
  f.number("max_completion_tokens", mct, 1.0, 1e12);
  f.boolean("logprobs", r.logprobs);
  f.number("top_logprobs", r.top_logprobs, 0.0, 20.0);
  if (f.err) return *f.err;
  if (mct > 0) max_tokens = mct;
  if (f.has("top_logprobs") && !r.logprobs)
    return bad("top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
  r.params.sampling.logprobs = r.logprobs ? r.top_logprobs : -1;
  if (f.has("response_format"))
    if (auto e = parse_response_format((*j)["response_format"], ctx, r)) return *e;

  if (!j->contains("messages")) return bad("messages", "'messages' is a required property");
  const auto& msgs = (*j)["messages"];
  if (!msgs.is_array() || msgs.empty())
    return bad("messages", "'messages' must be a non-empty array");
  ojson normalized = ojson::array();
  static const std::set<std::string> roles = {"system", "user", "assistant", "tool", "developer"};
  for (size_t i = 0; i < msgs.size(); ++i) {
    const auto& m = msgs[i];
    const std::string p = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return bad(p, p + " must be an object");
    if (!m.contains("role") || !m["role"].is_string() || !roles.count(m["role"].get<std::string>()))
      return bad(p + ".role", p + ".role must be one of system, user, assistant, tool");
    ojson n = m;
    if (n["role"] == "developer") n["role"] = "system";
    const bool has_calls = m.contains("tool_calls") && m["tool_calls"].is_array() &&
                           !m["tool_calls"].empty();
    if (!m.contains("content") && !has_calls) return bad(p + ".content", p + ".content is required");
    const auto text = content_text(m.contains("content") ? m["content"] : ojson());
    if (!text) return bad(p + ".content", p + ".content must be a string or a list of text parts");
    n["content"] = *text;
    normalized.push_back(n);
  }
  ojson tools = ojson::array();
  if (auto e = parse_tools(*j, ctx, r, tools)) return *e;
  auto rendered = ctx.tokenizer->render_chat(normalized, tools, true);
  if (!rendered.ok()) return bad("messages", rendered.status().message());
  r.params.prompt =
      encode_chat_prompt(*ctx.tokenizer, normalized, *rendered, ctx.allow_special_tokens_in_messages);
  if (auto e = finish_lengths(r, ctx, max_tokens, 0, "messages")) return *e;
  keep_eos_for_grammar(r, ctx);
  return r;
}

std::variant<ParsedRequest, ApiError> parse_completion_request(const std::string& body,
                                                                const ApiContext& ctx) {
  ApiError err;
  auto j = parse_json(body, err);
  if (!j) return err;
  std::set<std::string> known = kCommon;
  // response_format on completions is vLLM's extension; OpenAI's legacy API has none.
  known.insert({"prompt", "echo", "suffix", "best_of", "response_format"});
  if (auto e = check_known_fields(*j, known)) return *e;
  ParsedRequest r;
  r.chat = false;
  int64_t max_tokens = 0;
  if (auto e = parse_common(*j, ctx, r, max_tokens)) return *e;
  Fields f(*j);
  int lp = -1;
  f.number("logprobs", lp, 0.0, 20.0);
  f.boolean("echo", r.echo);
  int best_of = r.n;
  f.number("best_of", best_of, 1.0, double(ctx.max_n));
  if (f.err) return *f.err;
  if (best_of != r.n) return bad("best_of", "'best_of' different from 'n' is not supported");
  if (f.has("suffix")) return bad("suffix", "'suffix' is not supported");
  r.logprobs = lp >= 0;
  r.top_logprobs = std::max(lp, 0);
  r.params.sampling.logprobs = lp;
  if (f.has("response_format"))
    if (auto e = parse_response_format((*j)["response_format"], ctx, r)) return *e;
  if (!j->contains("prompt")) return bad("prompt", "'prompt' is a required property");
  const auto& p = (*j)["prompt"];
  if (p.is_string()) {
    r.prompt_text = p.get<std::string>();
  } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
    r.prompt_text = p[0].get<std::string>();
  } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
    for (const auto& t : p) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 ||
          t.get<int64_t>() >= ctx.config->vocab_size)
        return bad("prompt", "'prompt' token ids must be integers in [0, vocab_size)");
      r.params.prompt.push_back(t.get<int32_t>());
    }
    r.prompt_text = ctx.tokenizer->decode(r.params.prompt);
  } else {
    return bad("prompt", "'prompt' must be a string, a list of one string, or a list of token ids");
  }
  if (r.params.prompt.empty()) r.params.prompt = ctx.tokenizer->encode(r.prompt_text, true);
  constexpr int64_t kOpenAiDefaultMaxTokens = 16;  // the completions API's documented default
  if (auto e = finish_lengths(r, ctx, max_tokens, kOpenAiDefaultMaxTokens, "prompt")) return *e;
  keep_eos_for_grammar(r, ctx);
  return r;
}

std::vector<ojson> tool_call_chunks(const ParsedRequest& req, const ApiContext& ctx,
                                    const std::string& id, int64_t created, int index,
                                    int call_index, const ToolCall& call) {
  auto chunk = [&](ojson tc) {
    ojson ch;
    ch["index"] = index;
    ch["delta"] = ojson{{"tool_calls", ojson::array({std::move(tc)})}};
    ch["logprobs"] = nullptr;
    ch["finish_reason"] = nullptr;
    ojson out = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created},
                 {"model", ctx.model_name}, {"choices", ojson::array({ch})}};
    if (req.include_usage) out["usage"] = nullptr;
    return out;
  };
  std::vector<ojson> out;
  out.push_back(chunk({{"index", call_index}, {"id", call.id}, {"type", "function"},
                       {"function", {{"name", call.name}, {"arguments", ""}}}}));
  // Argument fragments as a streaming model would send them; cuts fall on UTF-8 starts.
  constexpr size_t kFragment = 24;
  for (size_t pos = 0; pos < call.arguments.size();) {
    size_t end = std::min(call.arguments.size(), pos + kFragment);
    while (end < call.arguments.size() && (uint8_t(call.arguments[end]) & 0xC0) == 0x80) ++end;
    out.push_back(chunk({{"index", call_index},
                         {"function", {{"arguments", call.arguments.substr(pos, end - pos)}}}}));
    pos = end;
  }
  return out;
}

ojson usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return ojson{{"prompt_tokens", prompt_tokens},
               {"completion_tokens", completion_tokens},
               {"total_tokens", prompt_tokens + completion_tokens}};
}

ojson logprobs_json(const Tokenizer& tok, bool chat, const std::vector<int32_t>& tokens,
                    const std::vector<SampleResult>& samples, int top_n) {
  auto text_of = [&](int32_t id) { return tok.decode(std::span<const int32_t>(&id, 1)); };
  auto bytes_of = [&](const std::string& s) {
    ojson b = ojson::array();
    for (unsigned char c : s) b.push_back(int(c));
    return b;
  };
  if (chat) {
    ojson content = ojson::array();
    for (size_t i = 0; i < samples.size() && i < tokens.size(); ++i) {
      const std::string t = text_of(tokens[i]);
      ojson top = ojson::array();
      for (int k = 0; k < top_n && k < int(samples[i].top.size()); ++k) {
        const std::string tt = text_of(samples[i].top[size_t(k)].id);
        top.push_back({{"token", tt}, {"logprob", samples[i].top[size_t(k)].logprob},
                       {"bytes", bytes_of(tt)}});
      }
      content.push_back({{"token", t}, {"logprob", samples[i].logprob}, {"bytes", bytes_of(t)},
                         {"top_logprobs", top}});
    }
    return ojson{{"content", content}};
  }
  ojson toks = ojson::array(), lps = ojson::array(), tops = ojson::array(), offs = ojson::array();
  size_t offset = 0;
  for (size_t i = 0; i < samples.size() && i < tokens.size(); ++i) {
    const std::string t = text_of(tokens[i]);
    toks.push_back(t);
    lps.push_back(samples[i].logprob);
    ojson top = ojson::object();
    for (int k = 0; k < top_n && k < int(samples[i].top.size()); ++k)
      top[text_of(samples[i].top[size_t(k)].id)] = samples[i].top[size_t(k)].logprob;
    tops.push_back(top);
    offs.push_back(offset);
    offset += t.size();
  }
  return ojson{{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops},
               {"text_offset", offs}};
}

ojson completion_response(const ParsedRequest& req, const ApiContext& ctx, const std::string& id,
                          int64_t created, const std::vector<ChoiceResult>& choices,
                          int64_t prompt_tokens, int64_t completion_tokens) {
  ojson out;
  out["id"] = id;
  out["object"] = req.chat ? "chat.completion" : "text_completion";
  out["created"] = created;
  out["model"] = ctx.model_name;
  ojson arr = ojson::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto& c = choices[i];
    ojson ch;
    ch["index"] = i;
    const ojson lp = req.logprobs ? logprobs_json(*ctx.tokenizer, req.chat, c.tokens, c.samples,
                                                  req.top_logprobs)
                                  : ojson(nullptr);
    if (req.chat) {
      if (c.tool_calls.empty()) {
        ch["message"] = {{"role", "assistant"}, {"content", c.text}};
      } else {
        ojson calls = ojson::array();
        for (const auto& tc : c.tool_calls)
          calls.push_back({{"id", tc.id},
                           {"type", "function"},
                           {"function", {{"name", tc.name}, {"arguments", tc.arguments}}}});
        ch["message"] = {{"role", "assistant"},
                         {"content", c.text.empty() ? ojson(nullptr) : ojson(c.text)},
                         {"tool_calls", calls}};
      }
      ch["logprobs"] = lp;
    } else {
      ch["text"] = req.echo ? req.prompt_text + c.text : c.text;
      ch["logprobs"] = lp;
    }
    ch["finish_reason"] = c.finish_reason;
    arr.push_back(ch);
  }
  out["choices"] = arr;
  out["usage"] = usage_json(prompt_tokens, completion_tokens);
  return out;
}

ojson stream_chunk(const ParsedRequest& req, const ApiContext& ctx, const std::string& id,
                   int64_t created, int index, const std::string* role, const std::string& text,
                   const std::string* finish_reason, const ojson* logprobs) {
  ojson out;
  out["id"] = id;
  out["object"] = req.chat ? "chat.completion.chunk" : "text_completion";
  out["created"] = created;
  out["model"] = ctx.model_name;
  ojson ch;
  ch["index"] = index;
  if (req.chat) {
    ojson delta = ojson::object();
    if (role) delta["role"] = *role;
    if (role || !text.empty()) delta["content"] = text;
    ch["delta"] = delta;
  } else {
    ch["text"] = text;
  }
  ch["logprobs"] = logprobs ? *logprobs : ojson(nullptr);
  ch["finish_reason"] = finish_reason ? ojson(*finish_reason) : ojson(nullptr);
  out["choices"] = ojson::array({ch});
  if (req.include_usage) out["usage"] = nullptr;
  return out;
}

}  // namespace qw

#include "tokenizer/chat_template.h"

#include "tokenizer/py_json.h"

namespace qw {
namespace {

using nlohmann::ordered_json;

// Verbatim copy of Qwen2.5-Instruct's chat_template (tokenizer_config.json of Qwen2.5-*-Instruct).
constexpr const char* kQwen25Template = R"JINJA({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %})JINJA";

constexpr const char* kDefaultSystem =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
constexpr const char* kToolsIntro =
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\n<tools>";
constexpr const char* kToolsOutro =
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
    "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n";

std::string trim_right(const std::string& s) {
  const size_t end = s.find_last_not_of(" \t\r\n");
  return end == std::string::npos ? std::string() : s.substr(0, end + 1);
}

// Jinja's attribute access on a dict: a missing key is Undefined (nullptr here).
const ordered_json* field(const ordered_json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

// Python truthiness of a JSON value (Undefined is false).
bool truthy(const ordered_json* v) {
  if (v == nullptr || v->is_null()) return false;
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_number_integer()) return v->get<int64_t>() != 0;
  if (v->is_number_unsigned()) return v->get<uint64_t>() != 0;
  if (v->is_number_float()) return v->get<double>() != 0.0;
  if (v->is_string()) return !v->get_ref<const std::string&>().empty();
  return !v->empty();  // list / dict
}

// `x == 'literal'` in Jinja: false for Undefined and for non-strings.
bool equals(const ordered_json* v, const char* literal) {
  return v != nullptr && v->is_string() && v->get_ref<const std::string&>() == literal;
}

// Operand of `+` with a string: Jinja raises unless it is a string.
Expected<std::string> concat_operand(const ordered_json* v, const std::string& what) {
  if (v == nullptr) return Status::Error(what + ": missing (the template concatenates it)");
  if (!v->is_string()) {
    return Status::Error(what + ": must be a string (the template concatenates it)");
  }
  return v->get<std::string>();
}

// {{ x }}: Undefined prints as nothing, everything else as Python's str().
Expected<std::string> print(const ordered_json* v, const std::string& what) {
  if (v == nullptr) return std::string();
  return python_str(*v, what);
}

const ordered_json* role_of(const ordered_json& messages, size_t i) {
  return field(messages[i], "role");
}

Status render_tool_calls(const ordered_json& message, const std::string& where, std::string& out) {
  const ordered_json& calls = *field(message, "tool_calls");
  if (!calls.is_array()) return Status::Error(where + ".tool_calls: must be a list");
  for (size_t k = 0; k < calls.size(); ++k) {
    const std::string call_where = where + ".tool_calls[" + std::to_string(k) + "]";
    const ordered_json* call = &calls[k];
    if (!call->is_object()) return Status::Error(call_where + ": must be an object");
    if (const ordered_json* fn = field(*call, "function")) {  // `is defined`
      if (!fn->is_object()) return Status::Error(call_where + ".function: must be an object");
      call = fn;
    }
    out += "\n<tool_call>\n{\"name\": \"";
    QW_ASSIGN_OR_RETURN(std::string name, print(field(*call, "name"), call_where + ".name"));
    out += name;
    out += "\", \"arguments\": ";
    const ordered_json* args = field(*call, "arguments");
    if (args == nullptr) {
      return Status::Error(call_where + ".arguments: missing (tojson of undefined fails)");
    }
    out += python_json_dumps(*args);  // a string argument stays a quoted JSON string, as in HF
    out += "}\n</tool_call>";
  }
  return Status::Ok();
}

}  // namespace

bool is_qwen25_chat_template(const std::string& source) {
  return trim_right(source) == trim_right(kQwen25Template);
}

const std::string& qwen25_chat_template_source() {
  static const std::string s(kQwen25Template);
  return s;
}

Expected<std::string> render_qwen25_chat(const ordered_json& messages, const ordered_json& tools,
                                         bool add_generation_prompt) {
  if (!messages.is_array()) return Status::Error("messages: must be a list");
  if (messages.empty()) return Status::Error("messages: empty (the template reads messages[0])");
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!messages[i].is_object()) {
      return Status::Error("messages[" + std::to_string(i) + "]: must be an object");
    }
  }
  if (!tools.is_null() && !tools.is_array()) return Status::Error("tools: must be a list or null");
  const bool first_is_system = equals(role_of(messages, 0), "system");
  std::string out;
  if (truthy(&tools)) {
    out += "<|im_start|>system\n";
    if (first_is_system) {
      QW_ASSIGN_OR_RETURN(std::string sys,
                          print(field(messages[0], "content"), "messages[0].content"));
      out += sys;
    } else {
      out += kDefaultSystem;
    }
    out += kToolsIntro;
    for (const ordered_json& tool : tools) {
      out += "\n";
      out += python_json_dumps(tool);
    }
    out += kToolsOutro;
  } else if (first_is_system) {
    QW_ASSIGN_OR_RETURN(std::string sys,
                        concat_operand(field(messages[0], "content"), "messages[0].content"));
    out += "<|im_start|>system\n" + sys + "<|im_end|>\n";
  } else {
    out += std::string("<|im_start|>system\n") + kDefaultSystem + "<|im_end|>\n";
  }

  for (size_t i = 0; i < messages.size(); ++i) {
    const ordered_json& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    const ordered_json* role = field(m, "role");
    const bool has_tool_calls = truthy(field(m, "tool_calls"));
    if (equals(role, "user") || (equals(role, "system") && i != 0) ||
        (equals(role, "assistant") && !has_tool_calls)) {
      QW_ASSIGN_OR_RETURN(std::string content,
                          concat_operand(field(m, "content"), where + ".content"));
      out += "<|im_start|>" + role->get<std::string>() + "\n" + content + "<|im_end|>\n";
    } else if (equals(role, "assistant")) {
      out += "<|im_start|>assistant";
      const ordered_json* content = field(m, "content");
      if (truthy(content)) {
        QW_ASSIGN_OR_RETURN(std::string text, concat_operand(content, where + ".content"));
        out += "\n" + text;
      }
      QW_RETURN_IF_ERROR(render_tool_calls(m, where, out));
      out += "<|im_end|>\n";
    } else if (equals(role, "tool")) {
      if (i == 0 || !equals(role_of(messages, i - 1), "tool")) out += "<|im_start|>user";
      out += "\n<tool_response>\n";
      QW_ASSIGN_OR_RETURN(std::string content, print(field(m, "content"), where + ".content"));
      out += content;
      out += "\n</tool_response>";
      if (i + 1 == messages.size() || !equals(role_of(messages, i + 1), "tool")) {
        out += "<|im_end|>\n";
      }
    }
    // Other roles render nothing, as in the template.
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace qw

// Native renderer of Qwen2.5-Instruct's ChatML chat template
// (tests/data/qwen2.5-instruct-chat-template.jinja), byte-identical to transformers'
// apply_chat_template(tokenize=False) with Jinja's semantics for the cases the template meets:
// undefined fields print as "", str + non-str is an error, `tojson` is json.dumps.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"

namespace qw {

// True when `source` is Qwen2.5-Instruct's template (ignoring trailing white space).
bool is_qwen25_chat_template(const std::string& source);

// The template's source text, as embedded in this build.
const std::string& qwen25_chat_template_source();

Expected<std::string> render_qwen25_chat(const nlohmann::ordered_json& messages,
                                         const nlohmann::ordered_json& tools,
                                         bool add_generation_prompt);

}  // namespace qw

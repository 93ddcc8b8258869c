// Qwen2 byte-level BPE tokenizer, byte-exact with HF `tokenizers` on the same tokenizer.json,
// plus Qwen2.5's ChatML chat template. See docs in each function; errors name the field.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace qw {

struct TokenizerData;

// Reads HF_DIR/tokenizer.json + tokenizer_config.json (+ generation_config.json eos ids, + a
// chat_template.jinja file, which wins over tokenizer_config's chat_template as in
// transformers), validates every component (normalizer NFC, pre_tokenizer Sequence[Split
// regex, ByteLevel], model BPE byte-level, decoder ByteLevel; others are refused by name) and
// returns the compact serialized form (uncompressed; the artifact writer compresses it).
Expected<std::vector<uint8_t>> build_tokenizer_blob(const std::string& hf_dir);
Expected<TokenizerData> import_hf_tokenizer(const std::string& hf_dir);

class Tokenizer {
 public:
  static Expected<Tokenizer> from_blob(std::span<const uint8_t> blob);
  static Expected<Tokenizer> from_hf_dir(const std::string& hf_dir);  // build + from_blob

  // Text -> ids, as HF Tokenizer.encode(text, add_special_tokens=False).ids.
  // allow_special=true: every added token in the text is matched as its id (HF default).
  // allow_special=false: tokens flagged special (<|im_start|>, <|endoftext|>, ...) are
  //   encoded as plain text, exactly as HF with split_special_tokens=True; non-special added
  //   tokens (<tool_call>, <|fim_prefix|>, ...) are still matched, as HF does.
  // Invalid UTF-8 is first replaced as bytes.decode("utf-8", errors="replace") would
  // (one U+FFFD per maximal ill-formed subpart), so encode(b) == HF(b.decode(errors=replace)).
  std::vector<int32_t> encode(std::string_view text, bool allow_special = true) const;
  void encode_append(std::string_view text, bool allow_special, std::vector<int32_t>& out) const;

  // Ids -> text, as HF Tokenizer.decode(ids, skip_special_tokens): bytes of each token,
  // then UTF-8 with invalid sequences replaced by U+FFFD. Unknown ids are skipped (as HF).
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  int32_t vocab_size() const;  // highest id + 1, added tokens included
  // Token <-> id in tokenizer.json's spelling (byte-level form, e.g. "Ġthe", "<|im_end|>").
  std::optional<int32_t> token_id(std::string_view token) const;
  std::string token_text(int32_t id) const;  // "" for unknown ids
  // The bytes a token stands for when decoded (may be a partial UTF-8 sequence).
  std::string_view token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;
  const std::vector<int32_t>& eos_ids() const;
  std::optional<int32_t> pad_id() const;
  const std::string& chat_template() const;

  // Renders the chat template exactly like HF apply_chat_template(tokenize=False). Only
  // Qwen2.5-Instruct's template is implemented natively; any other template stored in the
  // blob is refused with an error. messages / tools are OpenAI-style JSON; ordered_json keeps
  // object keys in the caller's order, which `tool | tojson` prints as HF does (a std::map
  // based nlohmann::json would sort them). tools may be null or an empty array.
  Expected<std::string> render_chat(const nlohmann::ordered_json& messages,
                                    const nlohmann::ordered_json& tools,
                                    bool add_generation_prompt) const;
  // Same, parsing the JSON texts (messages array, tools array or "" for none).
  Expected<std::string> render_chat_json(std::string_view messages_json,
                                         std::string_view tools_json,
                                         bool add_generation_prompt) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;  // immutable after construction; copies share it
};

// Streaming detokenizer: push ids as they are generated and get the text they complete.
// Never emits a partial UTF-8 sequence: bytes of an unfinished character are held until a
// later token completes them; bytes that can no longer form a character are emitted as
// U+FFFD right away. Concatenating every push() and flush() equals decode(all ids).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false);
  std::string push(int32_t id);
  std::string flush();  // emits held bytes (as U+FFFD) and resets

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace qw

#include "tokenizer/tokenizer.h"

#include <unordered_map>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/nfc.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_data.h"
#include "tokenizer/utf8.h"

namespace qw {

struct Tokenizer::Impl {
  Normalizer normalizer = Normalizer::kNfc;
  Pretokenizer pretokenizer;
  BpeModel bpe;
  AddedTokenMatcher added;
  std::vector<std::string> id_bytes;                   // id -> decoded bytes ("" for holes)
  std::vector<uint8_t> id_kind;                        // kNone / kVocab / kAdded / kSpecial
  std::unordered_map<std::string, int32_t> added_ids;  // content -> id
  std::unordered_map<std::string, int32_t> vocab_ids;  // raw bytes -> id
  std::vector<std::string> added_text;                 // id - first_added -> content (token_text)
  std::vector<int32_t> eos;
  std::optional<int32_t> pad;
  std::string chat_template;
  bool chat_template_is_qwen25 = false;

  static constexpr uint8_t kNone = 0, kVocab = 1, kAdded = 2, kSpecial = 3;

  Impl(Pretokenizer p, BpeModel b, const std::vector<AddedTokenData>& a)
      : pretokenizer(std::move(p)), bpe(std::move(b)), added(a) {}

  // Encodes text that contains no added token: normalize, split, BPE each piece.
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const {
    std::string normalized;
    if (normalizer == Normalizer::kNfc && !nfc_quick_check(text)) {
      nfc_normalize(text, normalized);
      text = normalized;
    }
    pretokenizer.split(text, [&](std::string_view piece) { bpe.encode_piece(piece, out); });
  }
};

Expected<Tokenizer> Tokenizer::from_blob(std::span<const uint8_t> blob) {
  QW_ASSIGN_OR_RETURN(TokenizerData d, deserialize_tokenizer_data(blob));
  QW_ASSIGN_OR_RETURN(Pretokenizer pre, Pretokenizer::create(d.split_regex));
  QW_ASSIGN_OR_RETURN(BpeModel bpe, BpeModel::create(d.vocab, d.merges));
  auto impl = std::make_shared<Impl>(std::move(pre), std::move(bpe), d.added_tokens);
  impl->normalizer = d.normalizer;
  size_t size = d.vocab.size();
  for (const AddedTokenData& a : d.added_tokens) size = std::max(size, size_t(a.id) + 1);
  impl->id_bytes.resize(size);
  impl->id_kind.assign(size, Impl::kNone);
  impl->vocab_ids.reserve(d.vocab.size());
  for (size_t id = 0; id < d.vocab.size(); ++id) {
    impl->id_bytes[id] = d.vocab[id];
    impl->id_kind[id] = Impl::kVocab;
    impl->vocab_ids.emplace(d.vocab[id], static_cast<int32_t>(id));
  }
  for (const AddedTokenData& a : d.added_tokens) {
    if (a.content.empty()) return Status::Error("tokenizer blob: added token with empty content");
    // HF's ByteLevel decoder maps a token's characters back to bytes when they all belong to
    // the byte-level alphabet and keeps its UTF-8 text otherwise.
    auto bytes = byte_level::decode_token(a.content);
    impl->id_bytes[a.id] = bytes ? *bytes : a.content;
    impl->id_kind[a.id] = a.special ? Impl::kSpecial : Impl::kAdded;
    impl->added_ids[a.content] = a.id;
  }
  for (int32_t id : d.eos_ids) {
    if (id < 0 || size_t(id) >= size) return Errorf("tokenizer blob: eos id %d out of range", id);
  }
  if (d.pad_id && (*d.pad_id < 0 || size_t(*d.pad_id) >= size)) {
    return Errorf("tokenizer blob: pad id %d out of range", *d.pad_id);
  }
  impl->eos = d.eos_ids;
  impl->pad = d.pad_id;
  impl->chat_template = std::move(d.chat_template);
  impl->chat_template_is_qwen25 = is_qwen25_chat_template(impl->chat_template);
  return Tokenizer(std::move(impl));
}

Expected<Tokenizer> Tokenizer::from_hf_dir(const std::string& hf_dir) {
  QW_ASSIGN_OR_RETURN(std::vector<uint8_t> blob, build_tokenizer_blob(hf_dir));
  return from_blob(blob);
}

void Tokenizer::encode_append(std::string_view text, bool allow_special,
                              std::vector<int32_t>& out) const {
  std::string sanitized;
  if (!utf8::is_valid(text)) {
    utf8::append_lossy(text, sanitized);
    text = sanitized;
  }
  const Impl& im = *impl_;
  if (im.added.empty()) {
    im.encode_plain(text, out);
    return;
  }
  im.added.split(
      text, allow_special, [&](std::string_view plain) { im.encode_plain(plain, out); },
      [&](int32_t id) { out.push_back(id); });
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int32_t> out;
  encode_append(text, allow_special, out);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= impl_->id_kind.size()) continue;
    const uint8_t kind = impl_->id_kind[id];
    if (kind == Impl::kNone || (skip_special && kind == Impl::kSpecial)) continue;
    bytes += impl_->id_bytes[id];
  }
  std::string out;
  utf8::append_lossy(bytes, out);
  return out;
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->id_kind.size());
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  if (auto it = impl_->added_ids.find(std::string(token)); it != impl_->added_ids.end()) {
    return it->second;
  }
  auto bytes = byte_level::decode_token(token);
  if (!bytes) return std::nullopt;
  if (auto it = impl_->vocab_ids.find(*bytes); it != impl_->vocab_ids.end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::token_text(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->id_kind.size()) return {};
  switch (impl_->id_kind[id]) {
    case Impl::kVocab:
      return byte_level::encode_bytes(impl_->id_bytes[id]);
    case Impl::kAdded:
    case Impl::kSpecial:
      for (const auto& [content, added_id] : impl_->added_ids) {
        if (added_id == id) return content;
      }
      return {};
    default:
      return {};
  }
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->id_bytes.size()) return {};
  return impl_->id_bytes[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->id_kind.size() && impl_->id_kind[id] == Impl::kSpecial;
}

const std::vector<int32_t>& Tokenizer::eos_ids() const {
  return impl_->eos;
}
std::optional<int32_t> Tokenizer::pad_id() const {
  return impl_->pad;
}
const std::string& Tokenizer::chat_template() const {
  return impl_->chat_template;
}

Expected<std::string> Tokenizer::render_chat(const nlohmann::ordered_json& messages,
                                             const nlohmann::ordered_json& tools,
                                             bool add_generation_prompt) const {
  if (impl_->chat_template.empty()) {
    return Status::Error(
        "chat template: the tokenizer has none (checkpoint without "
        "chat_template)");
  }
  if (!impl_->chat_template_is_qwen25) {
    return Status::Error(
        "chat template: only Qwen2.5-Instruct's template is implemented; the "
        "stored template differs (pass chat_template.jinja of Qwen2.5 at compile)");
  }
  return render_qwen25_chat(messages, tools, add_generation_prompt);
}

Expected<std::string> Tokenizer::render_chat_json(std::string_view messages_json,
                                                  std::string_view tools_json,
                                                  bool add_generation_prompt) const {
  using nlohmann::ordered_json;
  ordered_json messages = ordered_json::parse(messages_json, nullptr, false);
  if (messages.is_discarded()) return Status::Error("chat messages: not valid JSON");
  ordered_json tools;
  if (!tools_json.empty()) {
    tools = ordered_json::parse(tools_json, nullptr, false);
    if (tools.is_discarded()) return Status::Error("chat tools: not valid JSON");
  }
  return render_chat(messages, tools, add_generation_prompt);
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(&tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  if (id < 0 || id >= tokenizer_->vocab_size()) return {};
  if (skip_special_ && tokenizer_->is_special(id)) return {};
  pending_ += tokenizer_->token_bytes(id);
  const size_t ready = utf8::complete_prefix_length(pending_);
  std::string out;
  utf8::append_lossy(std::string_view(pending_).substr(0, ready), out);
  pending_.erase(0, ready);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  utf8::append_lossy(pending_, out);
  pending_.clear();
  return out;
}

}  // namespace qw

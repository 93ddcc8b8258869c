// Blob layout (all integers little-endian; strings are u32 length + bytes):
//   magic "QWTOKEN\0", u32 format version
//   u32 normalizer, string split_regex
//   u32 vocab count, then per token: u16 length + bytes
//   u32 merge count, then per merge: i32 left, i32 right, i32 result
//   u32 added-token count, then per token: i32 id, u8 flags, string content
//   u32 eos count + i32 ids, u8 has_pad, i32 pad id, string chat_template
#include <cstring>

#include "tokenizer/tokenizer_data.h"

namespace qw {
namespace {

constexpr char kMagic[8] = {'Q', 'W', 'T', 'O', 'K', 'E', 'N', '\0'};
constexpr uint32_t kFormatVersion = 1;
constexpr uint8_t kFlagSpecial = 1, kFlagLstrip = 2, kFlagRstrip = 4;

class Writer {
 public:
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  template <typename T>
  void pod(T v) {  // host is little-endian (x86-64 / aarch64), as the artifact format assumes
    bytes(&v, sizeof(v));
  }
  void str(const std::string& s) {
    pod(static_cast<uint32_t>(s.size()));
    bytes(s.data(), s.size());
  }
  std::vector<uint8_t> take() { return std::move(out_); }

 private:
  std::vector<uint8_t> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  template <typename T>
  Status pod(T* v, const char* field) {
    if (b_.size() - pos_ < sizeof(T)) return truncated(field);
    std::memcpy(v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }
  Status bytes(size_t n, std::string* s, const char* field) {
    if (b_.size() - pos_ < n) return truncated(field);
    s->assign(reinterpret_cast<const char*>(b_.data()) + pos_, n);
    pos_ += n;
    return Status::Ok();
  }
  Status str(std::string* s, const char* field) {
    uint32_t n = 0;
    QW_RETURN_IF_ERROR(pod(&n, field));
    return bytes(n, s, field);
  }
  // Guards count fields so a corrupt count cannot trigger a huge allocation.
  Status count(uint32_t* n, size_t min_item_size, const char* field) {
    QW_RETURN_IF_ERROR(pod(n, field));
    if (static_cast<size_t>(*n) * min_item_size > b_.size() - pos_) return truncated(field);
    return Status::Ok();
  }
  bool at_end() const { return pos_ == b_.size(); }

 private:
  Status truncated(const char* field) const {
    return Errorf("tokenizer blob: truncated at %s (offset %zu of %zu)", field, pos_, b_.size());
  }
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
};

}  // namespace

std::vector<uint8_t> serialize_tokenizer_data(const TokenizerData& d) {
  Writer w;
  w.bytes(kMagic, sizeof(kMagic));
  w.pod(kFormatVersion);
  w.pod(static_cast<uint32_t>(d.normalizer));
  w.str(d.split_regex);
  w.pod(static_cast<uint32_t>(d.vocab.size()));
  for (const std::string& t : d.vocab) {
    w.pod(static_cast<uint16_t>(t.size()));
    w.bytes(t.data(), t.size());
  }
  w.pod(static_cast<uint32_t>(d.merges.size()));
  for (const Merge& m : d.merges) {
    w.pod(m.left);
    w.pod(m.right);
    w.pod(m.result);
  }
  w.pod(static_cast<uint32_t>(d.added_tokens.size()));
  for (const AddedTokenData& a : d.added_tokens) {
    w.pod(a.id);
    w.pod(static_cast<uint8_t>((a.special ? kFlagSpecial : 0) | (a.lstrip ? kFlagLstrip : 0) |
                               (a.rstrip ? kFlagRstrip : 0)));
    w.str(a.content);
  }
  w.pod(static_cast<uint32_t>(d.eos_ids.size()));
  for (int32_t id : d.eos_ids) w.pod(id);
  w.pod(static_cast<uint8_t>(d.pad_id.has_value()));
  w.pod(d.pad_id.value_or(-1));
  w.str(d.chat_template);
  return w.take();
}

Expected<TokenizerData> deserialize_tokenizer_data(std::span<const uint8_t> blob) {
  Reader r(blob);
  TokenizerData d;
  std::string magic;
  QW_RETURN_IF_ERROR(r.bytes(sizeof(kMagic), &magic, "magic"));
  if (std::memcmp(magic.data(), kMagic, sizeof(kMagic)) != 0) {
    return Status::Error("tokenizer blob: bad magic (not a qw tokenizer section)");
  }
  uint32_t version = 0;
  QW_RETURN_IF_ERROR(r.pod(&version, "version"));
  if (version != kFormatVersion) {
    return Errorf("tokenizer blob: format version %u, this build reads %u", version,
                  kFormatVersion);
  }
  uint32_t norm = 0;
  QW_RETURN_IF_ERROR(r.pod(&norm, "normalizer"));
  if (norm > static_cast<uint32_t>(Normalizer::kNfc)) {
    return Errorf("tokenizer blob: unknown normalizer %u", norm);
  }
  d.normalizer = static_cast<Normalizer>(norm);
  QW_RETURN_IF_ERROR(r.str(&d.split_regex, "split_regex"));
  uint32_t n = 0;
  QW_RETURN_IF_ERROR(r.count(&n, sizeof(uint16_t), "vocab count"));
  d.vocab.resize(n);
  for (std::string& t : d.vocab) {
    uint16_t len = 0;
    QW_RETURN_IF_ERROR(r.pod(&len, "vocab token length"));
    QW_RETURN_IF_ERROR(r.bytes(len, &t, "vocab token"));
  }
  QW_RETURN_IF_ERROR(r.count(&n, 3 * sizeof(int32_t), "merge count"));
  d.merges.resize(n);
  for (Merge& m : d.merges) {
    QW_RETURN_IF_ERROR(r.pod(&m.left, "merge"));
    QW_RETURN_IF_ERROR(r.pod(&m.right, "merge"));
    QW_RETURN_IF_ERROR(r.pod(&m.result, "merge"));
  }
  QW_RETURN_IF_ERROR(r.count(&n, sizeof(int32_t) + 1 + sizeof(uint32_t), "added token count"));
  d.added_tokens.resize(n);
  for (AddedTokenData& a : d.added_tokens) {
    uint8_t flags = 0;
    QW_RETURN_IF_ERROR(r.pod(&a.id, "added token id"));
    QW_RETURN_IF_ERROR(r.pod(&flags, "added token flags"));
    QW_RETURN_IF_ERROR(r.str(&a.content, "added token content"));
    a.special = flags & kFlagSpecial;
    a.lstrip = flags & kFlagLstrip;
    a.rstrip = flags & kFlagRstrip;
  }
  QW_RETURN_IF_ERROR(r.count(&n, sizeof(int32_t), "eos count"));
  d.eos_ids.resize(n);
  for (int32_t& id : d.eos_ids) QW_RETURN_IF_ERROR(r.pod(&id, "eos id"));
  uint8_t has_pad = 0;
  int32_t pad = 0;
  QW_RETURN_IF_ERROR(r.pod(&has_pad, "has_pad"));
  QW_RETURN_IF_ERROR(r.pod(&pad, "pad id"));
  if (has_pad) d.pad_id = pad;
  QW_RETURN_IF_ERROR(r.str(&d.chat_template, "chat_template"));
  if (!r.at_end()) return Status::Error("tokenizer blob: trailing bytes after chat_template");
  return d;
}

}  // namespace qw

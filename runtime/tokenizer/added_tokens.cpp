#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace qw {

bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedTokenData>& tokens) : tokens_(tokens) {
  std::sort(tokens_.begin(), tokens_.end(), [](const AddedTokenData& a, const AddedTokenData& b) {
    const auto fa = static_cast<uint8_t>(a.content[0]), fb = static_cast<uint8_t>(b.content[0]);
    return fa != fb ? fa < fb : a.content.size() > b.content.size();
  });
  size_t i = 0;
  for (unsigned b = 0; b < 256; ++b) {
    first_byte_begin_[b] = static_cast<uint32_t>(i);
    while (i < tokens_.size() && static_cast<uint8_t>(tokens_[i].content[0]) == b) ++i;
  }
  first_byte_begin_[256] = static_cast<uint32_t>(i);
  by_first_byte_count_ = tokens_.size();
}

const AddedTokenData* AddedTokenMatcher::find(std::string_view text, size_t from,
                                              size_t* at) const {
  for (size_t i = from; i < text.size(); ++i) {
    const auto b = static_cast<uint8_t>(text[i]);
    const uint32_t end = first_byte_begin_[b + 1];
    for (uint32_t k = first_byte_begin_[b]; k < end; ++k) {  // longest first
      if (text.substr(i).starts_with(tokens_[k].content)) {
        *at = i;
        return &tokens_[k];
      }
    }
  }
  return nullptr;
}

size_t AddedTokenMatcher::white_space_start(std::string_view text, size_t end) {
  // Walk back code point by code point (continuation bytes are 10xxxxxx).
  size_t start = end;
  while (start > 0) {
    size_t lead = start - 1;
    while (lead > 0 && (static_cast<uint8_t>(text[lead]) & 0xC0) == 0x80) --lead;
    size_t i = lead;
    if (!is_white_space(utf8::next(text, i))) break;
    start = lead;
  }
  return start;
}

size_t AddedTokenMatcher::white_space_end(std::string_view text, size_t begin) {
  size_t end = begin;
  while (end < text.size()) {
    size_t i = end;
    if (!is_white_space(utf8::next(text, i))) break;
    end = i;
  }
  return end;
}

}  // namespace qw

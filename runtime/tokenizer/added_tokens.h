// Finds added tokens (<|im_start|>, <tool_call>, ...) in raw input text before normalization,
// as HF's AddedVocabulary does: leftmost-longest matches, non-overlapping, scanning on after
// each match; lstrip/rstrip swallow adjacent white space into the token.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer_data.h"

namespace qw {

class AddedTokenMatcher {
 public:
  explicit AddedTokenMatcher(const std::vector<AddedTokenData>& tokens);

  // Calls text_piece(string_view) for text between tokens and token(int32_t id) for each
  // token, in order. allow_special=false skips matches of special tokens (their text stays
  // plain), which is HF's encode_special_tokens / split_special_tokens=True.
  template <typename TextFn, typename TokenFn>
  void split(std::string_view text, bool allow_special, TextFn&& text_piece,
             TokenFn&& token) const {
    size_t search = 0;        // where the next match may start
    size_t start_offset = 0;  // end of what has been emitted
    while (search < text.size()) {
      size_t at = 0;
      const AddedTokenData* t = find(text, search, &at);
      if (t == nullptr) break;
      search = at + t->content.size();
      if (!allow_special && t->special) continue;
      size_t start = at, stop = search;
      if (t->lstrip) start = std::max(start_offset, white_space_start(text, start));
      if (t->rstrip) stop = white_space_end(text, stop);
      if (start_offset < start) text_piece(text.substr(start_offset, start - start_offset));
      token(t->id);
      start_offset = stop;
    }
    if (start_offset < text.size()) text_piece(text.substr(start_offset));
  }

  bool empty() const { return by_first_byte_count_ == 0; }

 private:
  const AddedTokenData* find(std::string_view text, size_t from, size_t* at) const;
  // Start of the run of White_Space code points that ends at `end`.
  static size_t white_space_start(std::string_view text, size_t end);
  // End of the run of White_Space code points that starts at `begin`.
  static size_t white_space_end(std::string_view text, size_t begin);

  std::vector<AddedTokenData> tokens_;            // sorted by first byte, then longest first
  std::array<uint32_t, 257> first_byte_begin_{};  // tokens_[begin[b], begin[b+1]) start with b
  size_t by_first_byte_count_ = 0;
};

// Rust char::is_whitespace (Unicode White_Space), used by HF for lstrip/rstrip.
bool is_white_space(char32_t c);

}  // namespace qw

// The Split pre-tokenizer (behavior Isolated): cuts normalized text into the pieces that BPE
// encodes one by one, with the regex given in tokenizer.json run by PCRE2 (UTF + UCP + JIT).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"

namespace qw {

// Rewrites an HF (Oniguruma-syntax) pattern into PCRE2 syntax with the same meaning.
// Oniguruma's \s is the Unicode White_Space property, which includes U+0085; PCRE2's UCP \s
// does not, so \s / \S are spelled out as explicit classes. Escapes whose meaning differs
// between the engines (\h, \v, \w, \b, ...) are refused rather than guessed.
Expected<std::string> convert_hf_regex(std::string_view hf_pattern);

class Pretokenizer {
 public:
  // pattern: HF syntax (as in tokenizer.json); converted and JIT-compiled here.
  static Expected<Pretokenizer> create(std::string_view hf_pattern);

  // Calls piece() for each piece of text (valid UTF-8), in order; matches and the gaps
  // between them are both pieces, as HF's SplitDelimiterBehavior::Isolated produces.
  template <typename F>
  void split(std::string_view text, F&& piece) const {
    size_t pos = 0;
    while (pos < text.size()) {
      size_t begin = 0, end = 0;
      if (!find(text, pos, &begin, &end)) break;
      if (begin > pos) piece(text.substr(pos, begin - pos));
      piece(text.substr(begin, end - begin));
      pos = end;
    }
    if (pos < text.size()) piece(text.substr(pos));
  }

 private:
  struct Compiled;
  explicit Pretokenizer(std::shared_ptr<const Compiled> c) : compiled_(std::move(c)) {}
  // Next non-empty match at or after `from`; false when there is none.
  bool find(std::string_view text, size_t from, size_t* begin, size_t* end) const;
  std::shared_ptr<const Compiled> compiled_;
};

}  // namespace qw

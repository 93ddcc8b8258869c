// Building blocks for `qwc tokenize --tokenizer DIR` and `qwrun tokenize|detokenize`: the
// mains parse their flags and call these.
#pragma once
#include <cstdint>
#include <ostream>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

namespace qw {

enum class IdsFormat { kJson, kSpaces };

struct TokenizeCliOptions {
  IdsFormat format = IdsFormat::kJson;
  bool allow_special = true;  // false: special-token text stays plain text
  bool show_tokens = false;   // also print one "id<TAB>token" line per id (tokenizer.json form)
};

// Prints the ids of `text` on one line ("[1, 2, 3]" or "1 2 3").
void print_tokenize(const Tokenizer& tok, std::string_view text, const TokenizeCliOptions& opt,
                    std::ostream& out);

// Parses ids written as a JSON array or separated by spaces / commas / newlines.
Expected<std::vector<int32_t>> parse_ids(std::string_view text);

// Parses ids (see parse_ids), checks their range and prints decode(ids) (no newline added).
Status print_detokenize(const Tokenizer& tok, std::string_view ids_text, bool skip_special,
                        std::ostream& out);

}  // namespace qw

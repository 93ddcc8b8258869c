#include "tokenizer/tokenize_cli.h"

#include <charconv>
#include <string>

namespace qw {

void print_tokenize(const Tokenizer& tok, std::string_view text, const TokenizeCliOptions& opt,
                    std::ostream& out) {
  const std::vector<int32_t> ids = tok.encode(text, opt.allow_special);
  const bool json = opt.format == IdsFormat::kJson;
  std::string line = json ? "[" : "";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) line += json ? ", " : " ";
    line += std::to_string(ids[i]);
  }
  if (json) line += "]";
  out << line << "\n";
  if (opt.show_tokens) {
    for (int32_t id : ids) out << id << "\t" << tok.token_text(id) << "\n";
  }
}

Expected<std::vector<int32_t>> parse_ids(std::string_view text) {
  std::vector<int32_t> ids;
  size_t i = 0;
  const auto is_sep = [](char c) {
    return c == ' ' || c == ',' || c == '\n' || c == '\r' || c == '\t' || c == '[' || c == ']';
  };
  while (i < text.size()) {
    if (is_sep(text[i])) {
      ++i;
      continue;
    }
    int32_t v = 0;
    const auto res = std::from_chars(text.data() + i, text.data() + text.size(), v);
    if (res.ec != std::errc() || (res.ptr != text.data() + text.size() && !is_sep(*res.ptr))) {
      return Errorf("ids: not an integer at offset %zu", i);
    }
    ids.push_back(v);
    i = static_cast<size_t>(res.ptr - text.data());
  }
  return ids;
}

Status print_detokenize(const Tokenizer& tok, std::string_view ids_text, bool skip_special,
                        std::ostream& out) {
  QW_ASSIGN_OR_RETURN(std::vector<int32_t> ids, parse_ids(ids_text));
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= tok.vocab_size()) {
      return Errorf("ids[%zu]: %d is outside the vocabulary (0..%d)", i, ids[i],
                    tok.vocab_size() - 1);
    }
  }
  out << tok.decode(ids, skip_special);
  return Status::Ok();
}

}  // namespace qw

#include "structured/token_trie.h"

#include <algorithm>
#include <numeric>

namespace qw {

std::shared_ptr<const TokenTrie> TokenTrie::build(const Tokenizer& tok) {
  auto t = std::make_shared<TokenTrie>();
  t->vocab_size = tok.vocab_size();
  t->token_bytes.resize(size_t(t->vocab_size));
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < t->vocab_size; ++id) {
    if (tok.is_special(id)) continue;
    const std::string_view b = tok.token_bytes(id);
    if (b.empty()) continue;
    t->token_bytes[size_t(id)] = std::string(b);
    ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return t->token_bytes[size_t(a)] < t->token_bytes[size_t(b)] ||
           (t->token_bytes[size_t(a)] == t->token_bytes[size_t(b)] && a < b);
  });
  // Sorted strings give the preorder directly: each string adds nodes below the longest
  // prefix it shares with the previous one; nodes deeper than that prefix are closed.
  std::vector<uint32_t> path;  // open node per depth
  std::vector<std::vector<int32_t>> node_tokens;
  const std::string* prev = nullptr;
  auto close_to = [&](size_t keep) {
    while (path.size() > keep) {
      t->skip[path.back()] = uint32_t(t->byte.size());
      path.pop_back();
    }
  };
  for (int32_t id : ids) {
    const std::string& s = t->token_bytes[size_t(id)];
    size_t lcp = 0;
    if (prev)
      while (lcp < s.size() && lcp < prev->size() && (*prev)[lcp] == s[lcp]) ++lcp;
    close_to(lcp);
    for (size_t d = lcp; d < s.size(); ++d) {
      path.push_back(uint32_t(t->byte.size()));
      t->byte.push_back(uint8_t(s[d]));
      t->depth.push_back(uint16_t(d + 1));
      t->skip.push_back(0);
      node_tokens.emplace_back();
    }
    node_tokens[path.back()].push_back(id);
    t->max_depth = std::max(t->max_depth, s.size());
    prev = &s;
  }
  close_to(0);
  t->tok_off.resize(t->byte.size() + 1);
  for (size_t i = 0; i < node_tokens.size(); ++i) {
    t->tok_off[i] = uint32_t(t->tok_ids.size());
    t->tok_ids.insert(t->tok_ids.end(), node_tokens[i].begin(), node_tokens[i].end());
  }
  t->tok_off[node_tokens.size()] = uint32_t(t->tok_ids.size());
  return t;
}

}  // namespace qw

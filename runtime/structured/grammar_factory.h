// Builds (and reuses) the grammars requests ask for: JSON mode, a JSON Schema, a forced
// tool call. Owns the vocabulary trie (built on first use) and the registry of compiled
// grammars, so their mask caches carry over between requests.
#pragma once
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "structured/grammar.h"

namespace qw {

class GrammarFactory {
 public:
  // Any JSON object.
  Expected<std::shared_ptr<Grammar>> json_object(const Tokenizer& tok);
  // prefix + an instance of `schema` + suffix; `where` names the schema in errors.
  Expected<std::shared_ptr<Grammar>> json_schema(const Tokenizer& tok, const nlohmann::ordered_json& schema,
                                                 const std::string& where,
                                                 const std::string& prefix = "",
                                                 const std::string& suffix = "");

 private:
  std::shared_ptr<const TokenTrie> trie(const Tokenizer& tok);

  std::once_flag trie_once_;
  std::shared_ptr<const TokenTrie> trie_;
  GrammarRegistry registry_;
};

}  // namespace qw

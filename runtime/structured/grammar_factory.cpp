#include "structured/grammar_factory.h"

namespace qw {

std::shared_ptr<const TokenTrie> GrammarFactory::trie(const Tokenizer& tok) {
  std::call_once(trie_once_, [&] { trie_ = TokenTrie::build(tok); });
  return trie_;
}

Expected<std::shared_ptr<Grammar>> GrammarFactory::json_object(const Tokenizer& tok) {
  return registry_.get("json_object", [&]() -> Expected<std::shared_ptr<Grammar>> {
    return std::make_shared<Grammar>(any_object_schema(), "", "", trie(tok));
  });
}

Expected<std::shared_ptr<Grammar>> GrammarFactory::json_schema(const Tokenizer& tok,
                                                               const nlohmann::ordered_json& schema,
                                                               const std::string& where,
                                                               const std::string& prefix,
                                                               const std::string& suffix) {
  // The key holds the framing too; `where` only shapes error text, which is not cached.
  const std::string key = "schema\x1f" + prefix + "\x1f" + suffix + "\x1f" + schema.dump();
  return registry_.get(key, [&]() -> Expected<std::shared_ptr<Grammar>> {
    auto g = compile_json_schema(schema, where);
    if (!g.ok()) return g.status();
    return std::make_shared<Grammar>(std::move(*g), prefix, suffix, trie(tok));
  });
}

}  // namespace qw

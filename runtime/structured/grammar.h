// Grammar-constrained decoding: which tokens of the vocabulary may come next.
//
// Grammar = a JsonAutomaton + the vocabulary trie + a cache of token masks keyed by the
// automaton state. A mask is computed by walking the trie with the state (a dead prefix
// prunes its whole subtree); states repeat a lot (inside a string, between items), so most
// steps are a cache hit. GrammarMatcher is one sequence's position in a Grammar.
//
// Threads: a Grammar's caches and the automaton's stack table are mutated by mask() /
// accept(), which only the engine thread calls; other threads may hold a Grammar and call
// initial() (immutable parts only).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <string>
#include <unordered_map>
#include <vector>

#include "structured/json_automaton.h"
#include "structured/token_trie.h"

namespace qw {

struct GrammarStats {
  uint64_t mask_hits = 0;
  uint64_t mask_misses = 0;
  double miss_seconds = 0;  // time spent walking the trie
};

class Grammar {
 public:
  Grammar(SchemaGraph graph, std::string prefix, std::string suffix,
          std::shared_ptr<const TokenTrie> trie);

  JsonState initial() const { return initial_; }
  JsonAutomaton& automaton() { return automaton_; }
  const TokenTrie& trie() const { return *trie_; }
  // Bitset over trie().vocab_size ids: tokens whose bytes keep the text a valid prefix.
  const std::vector<uint64_t>& mask(const JsonState& s);
  // `text` cut into tokens greedily, longest token first: the fewest-token spelling the
  // forced path writes when the budget ends (every byte is a token, so it always exists).
  std::vector<int32_t> greedy_tokens(std::string_view text) const;
  const GrammarStats& stats() const { return stats_; }

 private:
  void compute(const JsonState& s, std::vector<uint64_t>& out);

  JsonAutomaton automaton_;
  std::shared_ptr<const TokenTrie> trie_;
  JsonState initial_;
  std::vector<JsonState> levels_;  // trie walk: state after each depth
  std::unordered_map<std::string, std::vector<uint64_t>> cache_;
  GrammarStats stats_;
};

class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<Grammar> g) : g_(std::move(g)), state_(g_->initial()) {}

  // out = logits with every forbidden id at -inf. End-of-sequence ids are allowed exactly
  // when the text may end.
  void apply(std::span<const float> logits, std::span<const int64_t> eos, std::vector<float>& out);
  // Tokens still needed to complete the text (0 when it may end now), greedily spelled.
  size_t completion_tokens() const;
  // The same after `token`, or nullopt if the grammar forbids it.
  std::optional<size_t> completion_tokens_after(int32_t token) const;
  // From now on only the planned completion is allowed (then eos): the budget is spent.
  void force_completion();
  bool forcing() const { return forcing_; }
  // Advances over a token; false (and no change) if the grammar forbids it.
  bool accept(int32_t token);
  bool accepting() const { return g_->automaton().accepting(state_); }
  // Nothing may follow: the sequence should end.
  bool done() const { return g_->automaton().done(state_); }
  const Grammar& grammar() const { return *g_; }

 private:
  bool advance(const JsonState& from, int32_t token, JsonState& to) const;

  std::shared_ptr<Grammar> g_;
  JsonState state_;
  bool forcing_ = false;
  std::vector<int32_t> plan_;  // forced tokens still to write
  size_t plan_pos_ = 0;
};

// Compiled grammars by key (schema text), so repeated requests reuse the mask cache.
class GrammarRegistry {
 public:
  using Builder = std::function<Expected<std::shared_ptr<Grammar>>()>;
  Expected<std::shared_ptr<Grammar>> get(const std::string& key, const Builder& build);

 private:
  static constexpr size_t kMaxGrammars = 32;
  std::mutex mu_;
  std::map<std::string, std::pair<uint64_t, std::shared_ptr<Grammar>>> map_;  // key -> (use, g)
  uint64_t clock_ = 0;
};

}  // namespace qw

#include "structured/grammar.h"

#include <chrono>
#include <limits>

namespace qw {

namespace {
// Masks are 19 KB each for a 152k vocabulary; past this many states the cache restarts.
constexpr size_t kMaxCachedMasks = 1024;

void set_bit(std::vector<uint64_t>& bits, int32_t id) {
  bits[size_t(id) >> 6] |= uint64_t(1) << (id & 63);
}
}  // namespace

Grammar::Grammar(SchemaGraph graph, std::string prefix, std::string suffix,
                 std::shared_ptr<const TokenTrie> trie)
    : automaton_(std::move(graph), std::move(prefix), std::move(suffix)),
      trie_(std::move(trie)),
      initial_(automaton_.initial()) {
  levels_.resize(trie_->max_depth + 1);
}

void Grammar::compute(const JsonState& s, std::vector<uint64_t>& out) {
  const TokenTrie& t = *trie_;
  out.assign((size_t(t.vocab_size) + 63) / 64, 0);
  levels_[0].copy_from(s);
  const size_t n = t.nodes();
  for (size_t i = 0; i < n;) {
    const size_t d = t.depth[i];
    JsonState& cur = levels_[d];
    automaton_.step(levels_[d - 1], t.byte[i], cur);
    if (cur.n == 0) {
      i = t.skip[i];
      continue;
    }
    for (uint32_t k = t.tok_off[i]; k < t.tok_off[i + 1]; ++k) set_bit(out, t.tok_ids[k]);
    ++i;
  }
}

const std::vector<uint64_t>& Grammar::mask(const JsonState& s) {
  std::string key = s.key();
  if (auto it = cache_.find(key); it != cache_.end()) {
    ++stats_.mask_hits;
    return it->second;
  }
  ++stats_.mask_misses;
  if (cache_.size() >= kMaxCachedMasks) cache_.clear();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<uint64_t> bits;
  compute(s, bits);
  stats_.miss_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return cache_.emplace(std::move(key), std::move(bits)).first->second;
}

std::vector<int32_t> Grammar::greedy_tokens(std::string_view text) const {
  const TokenTrie& t = *trie_;
  std::vector<int32_t> out;
  for (size_t pos = 0; pos < text.size();) {
    size_t begin = 0, end = t.nodes(), best_len = 0;
    int32_t best = -1;
    for (size_t k = pos; k < text.size(); ++k) {
      size_t j = begin;
      while (j < end && t.byte[j] != uint8_t(text[k])) j = t.skip[j];
      if (j >= end) break;
      if (t.tok_off[j] < t.tok_off[j + 1]) {
        best = t.tok_ids[t.tok_off[j]];
        best_len = k - pos + 1;
      }
      begin = j + 1;
      end = t.skip[j];
    }
    if (best < 0) return {};  // a byte with no token: cannot happen with byte-level BPE
    out.push_back(best);
    pos += best_len;
  }
  return out;
}

bool GrammarMatcher::advance(const JsonState& from, int32_t token, JsonState& to) const {
  const TokenTrie& t = g_->trie();
  if (token < 0 || token >= t.vocab_size) return false;
  const std::string& bytes = t.token_bytes[size_t(token)];
  if (bytes.empty()) return false;
  JsonState tmp;
  to.copy_from(from);
  for (char b : bytes) {
    g_->automaton().step(to, uint8_t(b), tmp);
    if (tmp.n == 0) return false;
    to.copy_from(tmp);
  }
  return true;
}

void GrammarMatcher::apply(std::span<const float> logits, std::span<const int64_t> eos,
                           std::vector<float>& out) {
  constexpr float kMasked = -std::numeric_limits<float>::infinity();
  out.resize(logits.size());
  if (forcing_) {
    std::fill(out.begin(), out.end(), kMasked);
    if (plan_pos_ < plan_.size()) {
      const int32_t id = plan_[plan_pos_];
      if (size_t(id) < logits.size()) out[size_t(id)] = logits[size_t(id)];
    } else {
      for (int64_t e : eos)
        if (e >= 0 && size_t(e) < logits.size()) out[size_t(e)] = logits[size_t(e)];
    }
    return;
  }
  const std::vector<uint64_t>& bits = g_->mask(state_);
  const bool eos_ok = accepting();
  const size_t words = bits.size();
  for (size_t w = 0; w * 64 < logits.size(); ++w) {
    const uint64_t m = w < words ? bits[w] : 0;
    const size_t lo = w * 64, hi = std::min(logits.size(), lo + 64);
    if (m == ~uint64_t(0) && hi - lo == 64) {
      for (size_t i = lo; i < hi; ++i) out[i] = logits[i];
    } else {
      for (size_t i = lo; i < hi; ++i) out[i] = (m >> (i - lo)) & 1 ? logits[i] : kMasked;
    }
  }
  for (int64_t e : eos)
    if (e >= 0 && size_t(e) < logits.size()) out[size_t(e)] = eos_ok ? logits[size_t(e)] : kMasked;
}

size_t GrammarMatcher::completion_tokens() const {
  if (forcing_) return plan_.size() - plan_pos_;
  return g_->greedy_tokens(g_->automaton().completion(state_)).size();
}

std::optional<size_t> GrammarMatcher::completion_tokens_after(int32_t token) const {
  JsonState next;
  if (!advance(state_, token, next)) return std::nullopt;
  return g_->greedy_tokens(g_->automaton().completion(next)).size();
}

void GrammarMatcher::force_completion() {
  if (forcing_) return;
  forcing_ = true;
  plan_ = g_->greedy_tokens(g_->automaton().completion(state_));
  plan_pos_ = 0;
}

bool GrammarMatcher::accept(int32_t token) {
  if (forcing_ && (plan_pos_ >= plan_.size() || plan_[plan_pos_] != token)) return false;
  JsonState next;
  if (!advance(state_, token, next)) return false;
  state_.copy_from(next);
  if (forcing_) ++plan_pos_;
  return true;
}

Expected<std::shared_ptr<Grammar>> GrammarRegistry::get(const std::string& key,
                                                        const Builder& build) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = map_.find(key); it != map_.end()) {
      it->second.first = ++clock_;
      return it->second.second;
    }
  }
  auto g = build();  // outside the lock: compiling may take a while
  if (!g.ok()) return g.status();
  std::lock_guard<std::mutex> lock(mu_);
  if (map_.size() >= kMaxGrammars) {
    auto oldest = map_.begin();
    for (auto it = map_.begin(); it != map_.end(); ++it)
      if (it->second.first < oldest->second.first) oldest = it;
    map_.erase(oldest);
  }
  map_[key] = {++clock_, *g};
  return *g;
}

}  // namespace qw

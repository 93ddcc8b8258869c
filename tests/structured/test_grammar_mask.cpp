// Token masks over the real Qwen2.5 vocabulary (151,665 tokenizer ids): agreement with
// stepping each token's bytes, 200 sampled generations at temperature 1.0 that are always
// valid JSON (and valid against the schema), and the per-token cost of the mask.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <random>

#include "schema_validator.h"
#include "serving/constrained_sampling.h"
#include "structured/grammar.h"
#include "test_schemas.h"

using namespace qw;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

const Tokenizer& tokenizer() {
  static Tokenizer tok = [] {
    auto t = Tokenizer::from_hf_dir(QW_TEST_DATA_DIR);
    if (!t.ok()) throw std::runtime_error(t.status().message());
    return std::move(*t);
  }();
  return tok;
}

std::shared_ptr<const TokenTrie> trie() {
  static auto t = TokenTrie::build(tokenizer());
  return t;
}

constexpr int32_t kModelVocab = 151936;  // Qwen2.5's logits row (padded past the tokenizer)
const std::vector<int64_t> kEos = {151645, 151643};

std::shared_ptr<Grammar> grammar_for(const json& schema) {
  auto g = compile_json_schema(schema, "schema");
  if (!g.ok()) throw std::runtime_error(g.status().message());
  return std::make_shared<Grammar>(std::move(*g), "", "", trie());
}

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct GenStats {
  int valid = 0, total = 0;
  uint64_t tokens = 0;
  double grammar_s = 0, sampler_s = 0;
};

// `count` generations from random logits (a model that knows nothing) at temperature 1.
void generate(const std::shared_ptr<Grammar>& g, const json& schema, int count, int64_t min_tokens,
              GenStats& st) {
  std::mt19937 rng(99);
  std::normal_distribution<float> noise(0.f, 3.f);
  std::vector<float> logits(kModelVocab), scratch, plain_out;
  for (int i = 0; i < count; ++i) {
    SamplingParams sp;
    sp.temperature = 1.0;
    sp.seed = uint64_t(i);
    Sampler sampler(sp), plain(sp);
    GrammarMatcher m(g);
    const int64_t max_tokens = min_tokens + int64_t(rng() % 80);
    std::vector<int32_t> out;
    for (int64_t step = 0; step < max_tokens; ++step) {
      for (auto& x : logits) x = noise(rng);
      const auto t0 = Clock::now();
      const SampleResult r = sample_with_grammar(m, sampler, logits, out, out, kEos,
                                                 max_tokens - step, scratch);
      const bool eos = r.token == 151645 || r.token == 151643;
      if (!eos) REQUIRE(m.accept(r.token));
      const auto t1 = Clock::now();
      plain.sample(logits, out, out);  // what the same step costs without a grammar
      const auto t2 = Clock::now();
      st.grammar_s += secs(t1 - t0) - secs(t2 - t1);
      st.sampler_s += secs(t2 - t1);
      ++st.tokens;
      if (eos) break;
      out.push_back(r.token);
      if (m.done()) break;
    }
    const std::string text = tokenizer().decode(out);
    const json v = json::parse(text, nullptr, false);
    std::string why;
    const bool ok = !v.is_discarded() && v.is_object() && testing::validate(v, schema, schema, why);
    CHECK_MESSAGE(ok, text << " " << why);
    st.valid += ok;
    ++st.total;
  }
}

}  // namespace

TEST_CASE("the vocabulary trie holds every non-special token") {
  const TokenTrie& t = *trie();
  CHECK(t.vocab_size == tokenizer().vocab_size());
  size_t tokens = 0;
  for (const auto& b : t.token_bytes) tokens += !b.empty();
  CHECK(t.tok_ids.size() == tokens);
  CHECK(tokens > 150000);
  std::printf("[trie] %zu tokens, %zu nodes, longest token %zu bytes\n", tokens, t.nodes(),
              t.max_depth);
}

TEST_CASE("masks agree with stepping each token's bytes") {
  auto g = grammar_for(testing::person_schema());
  GrammarMatcher m(g);
  std::mt19937 rng(5);
  // A few positions: start, inside a key, inside a string value, after a value.
  for (const std::string prefix : {"", "{\"na", "{\"name\": \"Jo", "{\"name\": \"Jo\", \"age\": 4"}) {
    CAPTURE(prefix);
    GrammarMatcher p(g);
    for (int32_t id : tokenizer().encode(prefix)) REQUIRE(p.accept(id));
    std::vector<float> logits(kModelVocab, 0.f), out;
    p.apply(logits, kEos, out);
    int allowed = 0;
    for (int k = 0; k < 3000; ++k) {
      const int32_t id = int32_t(rng() % uint32_t(tokenizer().vocab_size()));
      const bool in_mask = out[size_t(id)] == 0.f;
      const bool steps = p.completion_tokens_after(id).has_value();
      const bool is_eos = id == 151645 || id == 151643;
      if (!is_eos) CHECK_MESSAGE(in_mask == steps, "token " << id);
      allowed += in_mask;
    }
    if (prefix == "{\"name\": \"Jo") CHECK(allowed > 2500);  // most tokens fit in a string
  }
  (void)m;
}

TEST_CASE("200 sampled generations at temperature 1.0 are valid JSON") {
  const json obj = {{"type", "object"}};
  GenStats a, b;
  auto ga = std::make_shared<Grammar>(any_object_schema(), "", "", trie());
  generate(ga, obj, 200, 3, a);  // budgets from 3 tokens: "{}" + eos fits
  CHECK(a.valid == 200);
  const json person = testing::person_schema();
  auto gb = grammar_for(person);
  generate(gb, person, 200, 30, b);
  CHECK(b.valid == 200);
  for (auto [name, st, g] : {std::tuple{"json_object", &a, ga}, std::tuple{"person schema", &b, gb}})
    std::printf("[grammar] %s: %d/%d valid, %llu tokens, grammar overhead %.1f us/token "
                "(sampler alone %.1f us/token), mask cache %llu hits / %llu misses, "
                "%.2f ms per miss\n",
                name, st->valid, st->total, (unsigned long long)st->tokens,
                1e6 * st->grammar_s / double(st->tokens), 1e6 * st->sampler_s / double(st->tokens),
                (unsigned long long)g->stats().mask_hits, (unsigned long long)g->stats().mask_misses,
                1e3 * g->stats().miss_seconds / double(std::max<uint64_t>(1, g->stats().mask_misses)));
}

TEST_CASE("per-token mask cost on the real vocabulary (benchmark)") {
  auto g = std::make_shared<Grammar>(any_object_schema(), "", "", trie());
  std::vector<float> logits(kModelVocab, 0.f), out;
  for (const std::string prefix : {"", "{\"", "{\"key\": \"some text", "{\"a\": [1, 2"}) {
    GrammarMatcher m(g);
    for (int32_t id : tokenizer().encode(prefix)) REQUIRE(m.accept(id));
    const auto t0 = Clock::now();
    m.apply(logits, kEos, out);  // cold: walks the trie
    const auto t1 = Clock::now();
    constexpr int kReps = 200;
    for (int i = 0; i < kReps; ++i) m.apply(logits, kEos, out);  // cached
    const auto t2 = Clock::now();
    size_t allowed = 0;
    for (float x : out) allowed += x == 0.f;
    std::printf("[mask] state after '%s': %zu allowed; cold %.2f ms, cached %.1f us per token\n",
                prefix.c_str(), allowed, 1e3 * secs(t1 - t0), 1e6 * secs(t2 - t1) / kReps);
  }
}

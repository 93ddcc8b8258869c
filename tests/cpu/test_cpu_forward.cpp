// The CPU executor against a naive float64 Qwen2 forward on small random weights, for
// every weight dtype, tied/untied heads, TP 1/2/4, chunked prefill, batching, YaRN and
// sliding windows; plus the executor's error paths.
#include <doctest/doctest.h>

#include <memory>

#include "cpu/cpu_executor.h"
#include "engine/generator.h"
#include "synthetic_model.h"

using namespace qw;
using qw::cpu::CpuExecutor;
using qw::cpu::CpuExecutorOptions;

namespace {

constexpr double kTolerance = 1e-4;  // issue 4: max|Δ| / max|ref| per position

std::vector<int32_t> some_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(rng() % uint64_t(vocab));
  return t;
}

std::unique_ptr<CpuExecutor> make(const test::HfModel& m, const test::PackedModel& p,
                                  CpuExecutorOptions o = {}) {
  auto ex = CpuExecutor::create(m.cfg, p.plan(), p.weights(), o);
  REQUIRE_MESSAGE(ex.ok(), ex.status().message());
  return std::move(ex.value());
}

// All-position logits of one prompt, prefilled in chunks of `chunk`.
std::vector<float> run_chunks(CpuExecutor& ex, const std::vector<int32_t>& toks, size_t chunk,
                              SeqId seq = 1) {
  std::vector<float> all, part;
  for (size_t pos = 0; pos < toks.size(); pos += chunk) {
    StepInput in;
    in.seq = seq;
    in.tokens = std::span<const int32_t>(toks.data() + pos, std::min(chunk, toks.size() - pos));
    in.start_pos = int64_t(pos);
    in.all_logits = true;
    Status st = ex.step(std::span<const StepInput>(&in, 1), part);
    REQUIRE_MESSAGE(st.ok(), st.message());
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

void check_against_reference(const test::HfModel& m, int64_t tp, size_t chunk, int64_t n = 24) {
  test::PackedModel p(m, tp);
  auto ex = make(m, p);
  const auto toks = some_tokens(n, m.cfg.vocab_size, 7);
  const auto ref = test::reference_logits(m, toks);
  const auto got = run_chunks(*ex, toks, chunk);
  REQUIRE(got.size() == ref.size() * size_t(m.cfg.vocab_size));
  double worst = 0;
  for (size_t t = 0; t < ref.size(); ++t)
    worst = std::max(worst, test::rel_err(got.data() + t * size_t(m.cfg.vocab_size), ref[t]));
  INFO("tp " << tp << " chunk " << chunk << " dtype " << dtype_name(m.dtype) << " worst " << worst);
  CHECK(worst <= kTolerance);
}

}  // namespace

TEST_CASE("forward matches the float64 reference for every dtype and head tying") {
  for (DType dt : {DType::F16, DType::BF16, DType::F32})
    for (bool tied : {true, false}) {
      const auto m = test::random_model(test::small_config(tied), dt, 11);
      check_against_reference(m, 1, 64);
    }
}

TEST_CASE("chunked prefill and token-by-token decode match the reference") {
  const auto m = test::random_model(test::small_config(false), DType::F16, 12);
  check_against_reference(m, 1, 5);
  check_against_reference(m, 1, 1);
}

TEST_CASE("tensor-parallel layouts (tp 2; 4, 8 with replicated KV heads) match") {
  for (bool tied : {true, false}) {
    const auto m = test::random_model(test::small_config(tied), DType::BF16, 13);
    check_against_reference(m, 2, 9);
    check_against_reference(m, 4, 9);
    check_against_reference(m, 8, 9);
  }
  // TP sums partial products in a different order: equal to tp 1 up to rounding.
  const auto m = test::random_model(test::small_config(false), DType::F16, 14);
  test::PackedModel p1(m, 1), p4(m, 4);
  auto e1 = make(m, p1), e4 = make(m, p4);
  const auto toks = some_tokens(17, m.cfg.vocab_size, 3);
  const auto a = run_chunks(*e1, toks, 17), b = run_chunks(*e4, toks, 17);
  double md = 0, mr = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    md = std::max(md, double(std::abs(a[i] - b[i])));
    mr = std::max(mr, double(std::abs(a[i])));
  }
  CHECK(md / mr <= 1e-5);
}

TEST_CASE("YaRN and linear RoPE scaling match the reference formulas") {
  auto cfg = test::small_config(true);
  cfg.rope_scaling.rope_type = "yarn";
  cfg.rope_scaling.factor = 4.0;
  cfg.rope_scaling.original_max_position_embeddings = 64;
  check_against_reference(test::random_model(cfg, DType::F16, 15), 1, 8, 80);
  check_against_reference(test::random_model(cfg, DType::F16, 15), 2, 80, 80);
  cfg.rope_scaling.rope_type = "linear";
  cfg.rope_scaling.factor = 2.0;
  check_against_reference(test::random_model(cfg, DType::F16, 16), 1, 80, 40);
}

TEST_CASE("YaRN parameters: attention factor and frequency ramp") {
  auto cfg = test::small_config(true);
  cfg.head_dim = 128;
  cfg.rope_theta = 1e6;
  cfg.rope_scaling.rope_type = "yarn";
  cfg.rope_scaling.factor = 4.0;
  cfg.rope_scaling.original_max_position_embeddings = 32768;
  auto p = cpu::compute_rope_params(cfg);
  REQUIRE(p.ok());
  CHECK(p->attention_scaling == doctest::Approx(0.1 * std::log(4.0) + 1.0).epsilon(1e-7));
  double scaling;
  const auto ref = test::ref_inv_freq(cfg, &scaling);
  for (size_t i = 0; i < ref.size(); ++i)
    CHECK(p->inv_freq[i] == doctest::Approx(ref[i]).epsilon(1e-6));
  // Highest frequencies are extrapolated (unchanged), lowest interpolated (divided by 4).
  CHECK(p->inv_freq[0] == doctest::Approx(1.0));
  CHECK(p->inv_freq.back() == doctest::Approx(ref.back()).epsilon(1e-6));
  CHECK(p->inv_freq.back() == doctest::Approx(1.0 / std::pow(1e6, 126.0 / 128) / 4).epsilon(1e-6));
  cfg.rope_scaling.rope_type = "longrope";
  auto bad = cpu::compute_rope_params(cfg);
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find("longrope") != std::string::npos);
}

TEST_CASE("sliding-window layers mask keys older than the window") {
  auto cfg = test::small_config(false);
  cfg.use_sliding_window = true;
  cfg.sliding_window = 6;
  cfg.max_window_layers = 1;  // layer 0 full, layer 1 windowed
  check_against_reference(test::random_model(cfg, DType::F16, 17), 1, 4, 20);
}

TEST_CASE("several sequences in one step equal separate runs") {
  const auto m = test::random_model(test::small_config(false), DType::F16, 18);
  test::PackedModel p(m, 2);
  auto ex = make(m, p);
  const auto a = some_tokens(10, m.cfg.vocab_size, 1), b = some_tokens(6, m.cfg.vocab_size, 2);
  const auto ref_a = test::reference_logits(m, a), ref_b = test::reference_logits(m, b);
  // Step 1: a[0:7] and b[0:6] together; step 2: a[7:10] alone, then a decode of b.
  std::vector<float> out;
  StepInput in[2];
  in[0].seq = 5;
  in[0].tokens = std::span<const int32_t>(a.data(), 7);
  in[1].seq = 9;
  in[1].tokens = std::span<const int32_t>(b.data(), 5);
  REQUIRE(ex->step(in, out).ok());
  const size_t V = size_t(m.cfg.vocab_size);
  REQUIRE(out.size() == 2 * V);
  CHECK(test::rel_err(out.data(), ref_a[6]) <= kTolerance);
  CHECK(test::rel_err(out.data() + V, ref_b[4]) <= kTolerance);
  in[0].tokens = std::span<const int32_t>(a.data() + 7, 3);
  in[0].start_pos = 7;
  in[1].tokens = std::span<const int32_t>(b.data() + 5, 1);
  in[1].start_pos = 5;
  in[1].want_logits = false;
  REQUIRE(ex->step(in, out).ok());
  REQUIRE(out.size() == V);
  CHECK(test::rel_err(out.data(), ref_a[9]) <= kTolerance);
  CHECK(ex->kv_usage().blocks_used == 2);  // 10 and 6 tokens, 16-token blocks
  ex->release(5);
  ex->release(9);
  CHECK(ex->kv_usage().blocks_used == 0);
}

TEST_CASE("a prompt that reuses a cached prefix gets the reference logits") {
  const auto m = test::random_model(test::small_config(false), DType::F16, 21);
  test::PackedModel p(m, 2);
  CpuExecutorOptions o;
  o.kv_block_tokens = 4;
  auto ex = make(m, p, o);
  const auto a = some_tokens(20, m.cfg.vocab_size, 3);
  run_chunks(*ex, a, 7, 1);
  ex->release(1);
  CHECK(ex->kv_usage().blocks_cached == 5);

  // b shares a's first 13 tokens: three full blocks (12 tokens) come from the cache.
  auto b = std::vector<int32_t>(a.begin(), a.begin() + 13);
  const auto tail = some_tokens(6, m.cfg.vocab_size, 4);
  b.insert(b.end(), tail.begin(), tail.end());
  const int64_t reused = ex->attach_prefix(2, b);
  REQUIRE(reused == 12);
  StepInput in;
  in.seq = 2;
  in.tokens = std::span<const int32_t>(b.data() + reused, b.size() - size_t(reused));
  in.start_pos = reused;
  in.all_logits = true;
  std::vector<float> out;
  REQUIRE(ex->step(std::span<const StepInput>(&in, 1), out).ok());
  const auto ref = test::reference_logits(m, b);
  const size_t V = size_t(m.cfg.vocab_size);
  for (size_t t = size_t(reused); t < b.size(); ++t)
    CHECK(test::rel_err(out.data() + (t - size_t(reused)) * V, ref[t]) <= kTolerance);

  // Switched off, the same calls reuse nothing.
  o.prefix_caching = false;
  auto off = make(m, p, o);
  run_chunks(*off, a, 7, 1);
  off->release(1);
  CHECK(off->attach_prefix(2, b) == 0);
  CHECK(off->kv_usage().blocks_cached == 0);
}

TEST_CASE("a chat's next turn reuses the KV of the previous one and replies the same") {
  const auto m = test::random_model(test::small_config(true), DType::BF16, 22);
  test::PackedModel p(m, 1);
  CpuExecutorOptions on_opts, off_opts;
  on_opts.kv_block_tokens = off_opts.kv_block_tokens = 4;
  off_opts.prefix_caching = false;
  auto on = make(m, p, on_opts), off = make(m, p, off_opts);
  auto turn = [](CpuExecutor& ex, const std::vector<int32_t>& prompt) {
    GenerateRequest req;
    req.prompt = prompt;
    req.max_new_tokens = 6;
    req.sampling.temperature = 0;
    req.reuse_cached_prefix = true;
    auto r = generate(ex, req, [](int32_t) { return std::string(); });
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    return *r;
  };
  auto first = some_tokens(30, m.cfg.vocab_size, 5);
  const GenerateResult a_on = turn(*on, first), a_off = turn(*off, first);
  CHECK(a_on.tokens == a_off.tokens);
  CHECK(a_on.reused_prefix == 0);
  // Next turn: the previous prompt and reply, then new user tokens.
  auto second = first;
  second.insert(second.end(), a_on.tokens.begin(), a_on.tokens.end());
  const auto more = some_tokens(9, m.cfg.vocab_size, 6);
  second.insert(second.end(), more.begin(), more.end());
  const GenerateResult b_on = turn(*on, second), b_off = turn(*off, second);
  CHECK(b_on.tokens == b_off.tokens);
  CHECK(b_off.reused_prefix == 0);
  // 30 prompt tokens + 5 fed-back reply tokens were written: 8 full blocks.
  CHECK(b_on.reused_prefix == 32);
  CHECK(on->kv_usage().blocks_used == 0);
}

TEST_CASE("executor errors name the sequence and the numbers") {
  const auto m = test::random_model(test::small_config(true), DType::F16, 19);
  test::PackedModel p(m, 1);
  CpuExecutorOptions o;
  o.kv_capacity_tokens = 32;
  auto ex = make(m, p, o);
  CHECK(ex->max_context() == 32);
  std::vector<float> out;
  const auto toks = some_tokens(40, m.cfg.vocab_size, 4);
  StepInput in;
  in.seq = 3;
  in.tokens = std::span<const int32_t>(toks.data(), 40);
  Status st = ex->step(std::span<const StepInput>(&in, 1), out);
  CHECK(!st.ok());
  CHECK(st.message().find("sequence 3") != std::string::npos);
  CHECK(st.message().find("40") != std::string::npos);
  in.tokens = std::span<const int32_t>(toks.data(), 4);
  in.start_pos = 2;
  st = ex->step(std::span<const StepInput>(&in, 1), out);
  CHECK(st.message().find("start_pos 2") != std::string::npos);
  const int32_t bad = int32_t(m.cfg.vocab_size);
  in.tokens = std::span<const int32_t>(&bad, 1);
  in.start_pos = 0;
  st = ex->step(std::span<const StepInput>(&in, 1), out);
  CHECK(st.message().find("outside the vocabulary") != std::string::npos);
  CHECK(ex->kv_usage().blocks_used == 0);  // failed steps take nothing

  // Weight shapes are checked up front, naming the tensor.
  cpu::ModelWeights w = p.weights();
  w.layers[1].ranks[0].down.cols -= 1;
  auto e2 = CpuExecutor::create(m.cfg, p.plan(), w);
  REQUIRE(!e2.ok());
  CHECK(e2.status().message().find("down") != std::string::npos);

  // A dtype the kernels cannot read (e.g. packed INT4 as u8/i32) is refused by name.
  cpu::ModelWeights w3 = p.weights();
  w3.layers[0].ranks[0].qkv.dtype = DType::I32;
  auto e3 = CpuExecutor::create(m.cfg, p.plan(), w3);
  REQUIRE(!e3.ok());
  CHECK(e3.status().message().find("qkv") != std::string::npos);
  CHECK(e3.status().message().find("i32") != std::string::npos);
}

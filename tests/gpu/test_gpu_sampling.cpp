// Sampling on the device: DeviceRowReducer (kernels_templates/sampling.cuh) against the host
// reference reduce_row_to_candidates on fresh random rows — ids and values bit for bit
// (the host sampler then draws the same token), log-sum-exp to 1e-5, overflowing ties
// flagged the same way.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "engine/candidates.h"
#include "gpu/cuda_util.h"
#include "gpu/gpu_test_support.h"
#include "gpu/kernel_module.h"
#include "gpu/row_reducer.h"

using namespace qw;
using namespace qw::gpu;

namespace {

KernelModule compile_module(int64_t vocab) {
  ModelConfig cfg;
  cfg.hidden_size = 896;
  cfg.intermediate_size = 1216;
  cfg.num_attention_heads = 14;
  cfg.num_key_value_heads = 2;
  cfg.head_dim = 64;
  cfg.vocab_size = vocab;
  cfg.num_hidden_layers = 1;
  cfg.rms_norm_eps = 1e-6;
  cfg.rope_theta = 1000000.0;
  cfg.max_position_embeddings = 32768;
  TpPlan plan;
  plan.tp = 1;
  plan.num_heads = 14;
  plan.num_kv_heads = 2;
  plan.q_heads_per_rank = 14;
  plan.kv_heads_per_rank = 2;
  plan.intermediate_per_rank = 1216;
  plan.vocab_per_rank = vocab;
  auto mod = KernelModule::compile_for_device(cfg, plan, DType::F16, 0);
  REQUIRE_MESSAGE(mod.ok(), mod.status().message());
  return std::move(*mod);
}

// Reduces `rows` of the device logits (host copy `host`, rows `stride` apart, V used) per
// `reqs` and checks each against the host reference: completeness, ids and values bit for
// bit, log-sum-exp to 1e-5 (NaN and infinities exactly as the reference has them).
void reduce_and_check(DeviceRowReducer& reducer, cudaStream_t st, const DeviceBuffer& logits_dev,
                      const std::vector<float>& host, int64_t stride, int64_t V,
                      const std::vector<int>& rows, const std::vector<CandidateRequest>& reqs) {
  std::vector<RowCandidates> got(rows.size());
  std::vector<RowCandidates*> dst;
  for (auto& g : got) {
    g.ids.assign(3, -7);  // poison: must be replaced
    dst.push_back(&g);
  }
  const Status s = reducer.reduce(st, logits_dev.as<float>(), V, rows, reqs, dst);
  REQUIRE_MESSAGE(s.ok(), s.message());
  for (size_t j = 0; j < rows.size(); ++j) {
    RowCandidates want;
    reduce_row_to_candidates(
        std::span<const float>(host.data() + size_t(rows[j]) * size_t(stride), size_t(V)), reqs[j],
        want);
    INFO("V " << V << " row " << rows[j] << " k " << reqs[j].k);
    REQUIRE(got[j].complete == want.complete);
    if (std::isnan(want.logsumexp))
      CHECK(std::isnan(got[j].logsumexp));
    else if (std::isinf(want.logsumexp))
      CHECK(got[j].logsumexp == want.logsumexp);
    else
      CHECK(got[j].logsumexp == doctest::Approx(want.logsumexp).epsilon(1e-5));
    if (!want.complete) continue;
    REQUIRE(got[j].ids == want.ids);
    for (size_t i = 0; i < want.values.size(); ++i)
      CHECK(std::memcmp(&got[j].values[i], &want.values[i], 4) == 0);
  }
}

}  // namespace

TEST_CASE("device row reduction equals the host reference") {
  if (!testing::have_gpu()) return;
  std::mt19937_64 rng(testing::gpu_test_seed());
  for (int64_t V : {int64_t(1000), int64_t(152064)}) {
    KernelModule mod = compile_module(V);
    const int64_t stride = V + 64;  // rows padded as the executor's vocab rows may be
    const int R = 40;
    auto reducer = DeviceRowReducer::create(mod, R, stride);
    REQUIRE_MESSAGE(reducer.ok(), reducer.status().message());
    auto logits_dev = DeviceBuffer::alloc(size_t(R) * size_t(stride) * 4, "logits");
    REQUIRE(logits_dev.ok());
    auto st = Stream::create();
    REQUIRE(st.ok());
    for (int round = 0; round < 4; ++round) {
      std::vector<float> host(size_t(R) * size_t(stride), std::nanf(""));
      for (int r = 0; r < R; ++r) {
        const int kind = int(rng() % 4);
        for (int64_t i = 0; i < V; ++i) {
          float x;
          if (kind == 0)
            x = float(int(rng() % 41) - 20) * 0.25f;  // many ties
          else if (kind == 1)
            x = float(std::normal_distribution<double>(0, 3)(rng));
          else if (kind == 2)
            x = (rng() % 7 == 0) ? -INFINITY : float(int(rng() % 2001) - 1000) * 1e-3f;
          else
            x = float(std::normal_distribution<double>(0, 1)(rng)) * ((i % 3) ? 1.f : -0.f);
          host[size_t(r) * size_t(stride) + size_t(i)] = x;
        }
      }
      REQUIRE(cudaMemcpy(logits_dev->get(), host.data(), host.size() * 4, cudaMemcpyHostToDevice) ==
              cudaSuccess);
      // Reduce a random subset of rows, in shuffled order, with random requests.
      std::vector<int> rows;
      for (int r = 0; r < R; ++r)
        if (rng() % 4) rows.push_back(r);
      std::shuffle(rows.begin(), rows.end(), rng);
      std::vector<std::vector<LogitPenalty>> pens(rows.size());
      std::vector<CandidateRequest> reqs(rows.size());
      for (size_t j = 0; j < rows.size(); ++j) {
        CandidateRequest& q = reqs[j];
        q.k = int32_t(1 + rng() % kMaxCandidates);
        q.temperature = rng() % 3 ? 1.f : float(0.1 + double(rng() % 100) / 50.0);
        q.repetition_penalty = rng() % 2 ? 1.f : 1.05f + float(rng() % 30) / 100.f;
        std::vector<int32_t> ids;
        const int np = int(rng() % 300);
        for (int e = 0; e < np; ++e) ids.push_back(int32_t(rng() % uint64_t(V)));
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        for (int32_t id : ids)
          pens[j].push_back(
              LogitPenalty{id, int32_t(rng() % 4 != 0), rng() % 2 ? 0.f : float(rng() % 5) * 0.3f});
        q.penalties = pens[j];
      }
      INFO("round " << round);
      reduce_and_check(*reducer, st->get(), *logits_dev, host, stride, V, rows, reqs);
    }
  }
}

// Greedy requests (k == 1, no penalties) take the many-blocks-per-row kernel: same contract.
// Rows of many ties (more than kMaxCandidates at the top: flagged incomplete), ties of a
// few, -inf entries, a row of -inf only, signed zeros, temperature; rows reduced in
// shuffled order, twice (the arrival counters must come back to zero).
TEST_CASE("device greedy row reduction equals the host reference") {
  if (!testing::have_gpu()) return;
  std::mt19937_64 rng(testing::gpu_test_seed() + 1);
  for (int64_t V : {int64_t(1000), int64_t(152064)}) {  // 152064: 38 slices
    KernelModule mod = compile_module(V);
    const int64_t stride = V + 64;
    const int R = 24;
    auto reducer = DeviceRowReducer::create(mod, R, stride);
    REQUIRE_MESSAGE(reducer.ok(), reducer.status().message());
    auto logits_dev = DeviceBuffer::alloc(size_t(R) * size_t(stride) * 4, "logits");
    REQUIRE(logits_dev.ok());
    auto st = Stream::create();
    REQUIRE(st.ok());
    for (int round = 0; round < 3; ++round) {
      std::vector<float> host(size_t(R) * size_t(stride), std::nanf(""));
      for (int r = 0; r < R; ++r) {
        const int kind = r % 6;
        const int64_t top = int64_t(rng() % uint64_t(V));
        for (int64_t i = 0; i < V; ++i) {
          float x;
          if (kind == 0)
            x = float(int(rng() % 41) - 20) * 0.25f;  // thousands of ties at the top
          else if (kind == 1)
            x = float(std::normal_distribution<double>(0, 3)(rng));
          else if (kind == 2)
            x = (rng() % 7 == 0) ? -INFINITY : float(int(rng() % 2001) - 1000) * 1e-3f;
          else if (kind == 3)
            x = -INFINITY;
          else if (kind == 4)  // a few ties at the top, spread over the row, some -0
            x = (i % 997 == top % 997) ? 5.f : float(int(rng() % 100)) * 0.01f;
          else
            x = (i == top) ? -0.f : -float(rng() % 1000 + 1) * 1e-3f;  // maximum -0 vs 0 ...
          host[size_t(r) * size_t(stride) + size_t(i)] = x;
        }
        if (kind == 5) host[size_t(r) * size_t(stride) + size_t((top + 1) % V)] = 0.f;  // ... ties
      }
      REQUIRE(cudaMemcpy(logits_dev->get(), host.data(), host.size() * 4, cudaMemcpyHostToDevice) ==
              cudaSuccess);
      for (int pass = 0; pass < 2; ++pass) {
        std::vector<int> rows;
        for (int r = 0; r < R; ++r)
          if (rng() % 5) rows.push_back(r);
        std::shuffle(rows.begin(), rows.end(), rng);
        std::vector<CandidateRequest> reqs(rows.size());
        for (auto& q : reqs) {
          q.k = 1;
          q.temperature = rng() % 2 ? 1.f : float(0.1 + double(rng() % 100) / 50.0);
        }
        INFO("round " << round << " pass " << pass);
        reduce_and_check(*reducer, st->get(), *logits_dev, host, stride, V, rows, reqs);
      }
    }
  }
}

// Causal GQA attention of a batch of query rows over the paged KV cache.
#pragma once
#include <cstdint>
#include <vector>

#include "cpu/kv_cache.h"
#include "core/thread_pool.h"

namespace qw::cpu {

struct AttentionRow {
  const std::vector<int32_t>* table = nullptr;  // the row's sequence block table
  int64_t pos = 0;                              // the row's position; keys [0, pos] are cached
};

struct AttentionShape {
  int64_t rank = 0;
  int64_t layer = 0;
  int64_t q_heads = 0;   // this rank's
  int64_t kv_heads = 0;  // this rank's; q head h reads kv head h / (q_heads / kv_heads)
  int64_t head_dim = 0;
  int64_t window = 0;  // sliding window (keys with pos - key < window); 0 = full causal
};

// out[i, h, :] = softmax_t(q[i, h, :] . K[t] / sqrt(head_dim)) V[t] over the row's keys.
// q rows have stride ldq (heads contiguous from the row start), out rows stride ldo.
void attention(ThreadPool& pool, const KvCache& cache, const std::vector<AttentionRow>& rows,
               const AttentionShape& s, const float* q, int64_t ldq, float* out, int64_t ldo);

}  // namespace qw::cpu

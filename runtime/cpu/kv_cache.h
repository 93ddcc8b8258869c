// fp32 paged KV cache: a pool of fixed-size blocks (block_tokens positions each), handed
// to sequences on demand and returned on release. One block holds those positions for
// every TP rank and layer, laid out [rank][layer][K|V][kv_head][token][head_dim], so a
// sequence needs one block table however many ranks the artifact has. Block memory is
// allocated on first use, so a large capacity costs nothing until it is filled.
#pragma once
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/status.h"

namespace qw::cpu {

struct KvGeometry {
  int64_t ranks = 1;
  int64_t layers = 0;
  int64_t kv_heads_per_rank = 0;
  int64_t head_dim = 0;
  int64_t block_tokens = 16;
};

class KvCache {
 public:
  KvCache(KvGeometry g, int64_t capacity_blocks);

  const KvGeometry& geometry() const { return g_; }
  int64_t blocks_total() const { return int64_t(blocks_.size()); }
  int64_t blocks_used() const { return blocks_total() - int64_t(free_.size()); }

  // Tokens cached for seq (0 for a sequence the cache has never seen).
  int64_t length(uint64_t seq) const;
  // Blocks that growing seq to new_length would take from the pool.
  int64_t blocks_needed(uint64_t seq, int64_t new_length) const;
  int64_t blocks_free() const { return int64_t(free_.size()); }
  // Makes room for positions [0, new_length) of seq and records the new length. The
  // caller checks blocks_needed() against blocks_free() first.
  Status grow(uint64_t seq, int64_t new_length);
  // Returns seq's blocks to the pool.
  void release(uint64_t seq);

  // seq's block table (looked up once per step, not per position).
  const std::vector<int32_t>& table(uint64_t seq) const { return seqs_.at(seq).blocks; }
  // K (kv = 0) or V (kv = 1) vector of one head at one position of a sequence's table.
  float* slot(const std::vector<int32_t>& table, int64_t rank, int64_t layer, int kv, int64_t head,
              int64_t pos) const {
    return blocks_[size_t(table[size_t(pos / g_.block_tokens)])].get() +
           offset(rank, layer, kv, head, pos % g_.block_tokens);
  }

 private:
  struct Seq {
    int64_t length = 0;
    std::vector<int32_t> blocks;
  };
  int64_t block_floats() const;
  int64_t offset(int64_t rank, int64_t layer, int kv, int64_t head, int64_t tok) const {
    return ((((rank * g_.layers + layer) * 2 + kv) * g_.kv_heads_per_rank + head) *
                g_.block_tokens +
            tok) *
           g_.head_dim;
  }

  KvGeometry g_;
  std::vector<std::unique_ptr<float[]>> blocks_;
  std::vector<int32_t> free_;  // a stack: recently freed blocks are reused first (warm)
  std::unordered_map<uint64_t, Seq> seqs_;
};

}  // namespace qw::cpu

// fp32 paged KV cache: block storage on the host, with the block bookkeeping (tables,
// reference counts, prefix reuse) in the shared KvBlockManager. One block holds its
// positions for every TP rank and layer, laid out [rank][layer][K|V][kv_head][token][head_dim],
// so a sequence needs one block table however many ranks the artifact has. Block memory is
// allocated on first use, so a large capacity costs nothing until it is filled.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "engine/kv_block_manager.h"

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
  KvCache(KvGeometry g, int64_t capacity_blocks, bool prefix_caching);

  const KvGeometry& geometry() const { return g_; }
  KvBlockManager& blocks() { return mgr_; }
  const KvBlockManager& blocks() const { return mgr_; }
  int64_t blocks_total() const { return int64_t(storage_.size()); }

  // Gives seq blocks (with memory) for positions [0, new_length).
  Status reserve(uint64_t seq, int64_t new_length);

  // K (kv = 0) or V (kv = 1) vector of one head at one position of a sequence's table.
  float* slot(const std::vector<int32_t>& table, int64_t rank, int64_t layer, int kv, int64_t head,
              int64_t pos) const {
    return storage_[size_t(table[size_t(pos / g_.block_tokens)])].get() +
           offset(rank, layer, kv, head, pos % g_.block_tokens);
  }

 private:
  int64_t block_floats() const;
  int64_t offset(int64_t rank, int64_t layer, int kv, int64_t head, int64_t tok) const {
    return ((((rank * g_.layers + layer) * 2 + kv) * g_.kv_heads_per_rank + head) *
                g_.block_tokens +
            tok) *
           g_.head_dim;
  }

  KvGeometry g_;
  KvBlockManager mgr_;
  std::vector<std::unique_ptr<float[]>> storage_;
};

}  // namespace qw::cpu

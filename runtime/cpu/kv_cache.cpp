#include "cpu/kv_cache.h"

namespace qw::cpu {

KvCache::KvCache(KvGeometry g, int64_t capacity_blocks, bool prefix_caching)
    : g_(g),
      mgr_(KvBlockManagerOptions{capacity_blocks, g.block_tokens, 0, prefix_caching}),
      storage_(size_t(capacity_blocks)) {}

int64_t KvCache::block_floats() const {
  return g_.ranks * g_.layers * 2 * g_.kv_heads_per_rank * g_.block_tokens * g_.head_dim;
}

Status KvCache::reserve(uint64_t seq, int64_t new_length) {
  QW_RETURN_IF_ERROR(mgr_.reserve(seq, new_length));
  for (int32_t b : mgr_.table(seq))
    if (!storage_[size_t(b)]) storage_[size_t(b)] = std::make_unique<float[]>(size_t(block_floats()));
  return Status::Ok();
}

}  // namespace qw::cpu

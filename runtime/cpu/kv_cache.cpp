#include "cpu/kv_cache.h"

namespace qw::cpu {

KvCache::KvCache(KvGeometry g, int64_t capacity_blocks) : g_(g) {
  blocks_.resize(size_t(capacity_blocks));
  free_.reserve(size_t(capacity_blocks));
  for (int64_t b = capacity_blocks - 1; b >= 0; --b) free_.push_back(int32_t(b));
}

int64_t KvCache::block_floats() const {
  return g_.ranks * g_.layers * 2 * g_.kv_heads_per_rank * g_.block_tokens * g_.head_dim;
}

int64_t KvCache::length(uint64_t seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : it->second.length;
}

int64_t KvCache::blocks_needed(uint64_t seq, int64_t new_length) const {
  auto it = seqs_.find(seq);
  const int64_t have = it == seqs_.end() ? 0 : int64_t(it->second.blocks.size());
  const int64_t need = (new_length + g_.block_tokens - 1) / g_.block_tokens;
  return need > have ? need - have : 0;
}

Status KvCache::grow(uint64_t seq, int64_t new_length) {
  const int64_t need = blocks_needed(seq, new_length);
  if (need > blocks_free())
    return Errorf(
        "sequence %llu: KV cache full (%lld more blocks of %lld tokens needed, %lld free)",
        (unsigned long long)seq, (long long)need, (long long)g_.block_tokens,
        (long long)blocks_free());
  Seq& s = seqs_[seq];
  for (int64_t i = 0; i < need; ++i) {
    const int32_t b = free_.back();
    free_.pop_back();
    if (!blocks_[size_t(b)]) blocks_[size_t(b)] = std::make_unique<float[]>(size_t(block_floats()));
    s.blocks.push_back(b);
  }
  s.length = new_length;
  return Status::Ok();
}

void KvCache::release(uint64_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  for (auto it2 = it->second.blocks.rbegin(); it2 != it->second.blocks.rend(); ++it2)
    free_.push_back(*it2);
  seqs_.erase(it);
}

}  // namespace qw::cpu

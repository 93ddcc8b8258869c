#include "engine/kv_block_manager.h"

#include <algorithm>
#include <cstring>

#include "core/checksum.h"

namespace qw {

namespace {
const std::vector<int32_t> kNoBlocks;
}

KvBlockManager::KvBlockManager(KvBlockManagerOptions o) : opts_(o) {
  blocks_.resize(size_t(o.blocks));
  free_.reserve(size_t(o.blocks));
  for (int64_t b = o.blocks - 1; b >= 0; --b) free_.push_back(int32_t(o.first_block + b));
}

uint64_t KvBlockManager::chain(uint64_t parent, std::span<const int32_t> tokens) const {
  std::vector<uint8_t> bytes(8 + tokens.size_bytes());
  std::memcpy(bytes.data(), &parent, 8);
  std::memcpy(bytes.data() + 8, tokens.data(), tokens.size_bytes());
  return xxh3_64(bytes);
}

int64_t KvBlockManager::length(SeqId seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : it->second.length;
}

const std::vector<int32_t>& KvBlockManager::table(SeqId seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? kNoBlocks : it->second.blocks;
}

int64_t KvBlockManager::blocks_needed(SeqId seq, int64_t new_length) const {
  const int64_t have = int64_t(table(seq).size());
  const int64_t need = (new_length + opts_.block_tokens - 1) / opts_.block_tokens;
  return std::max<int64_t>(0, need - have);
}

KvUsage KvBlockManager::usage() const {
  KvUsage u;
  u.blocks_total = int64_t(blocks_.size());
  u.blocks_cached = int64_t(lru_.size());
  u.blocks_used = u.blocks_total - int64_t(free_.size()) - u.blocks_cached;
  u.block_tokens = opts_.block_tokens;
  return u;
}

int32_t KvBlockManager::take_block() {
  int32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {  // reclaim the least recently used cached block
    id = lru_.front();
    lru_.pop_front();
    Block& b = block(id);
    auto it = by_hash_.find(b.hash);
    if (it != by_hash_.end() && it->second == id) by_hash_.erase(it);
    b.hashed = false;
    b.tokens.clear();
  }
  block(id).refs = 1;
  return id;
}

int64_t KvBlockManager::attach_prefix(SeqId seq, std::span<const int32_t> tokens) {
  Seq& s = seqs_[seq];
  if (!s.blocks.empty() || !opts_.prefix_caching) return s.length;
  const size_t B = size_t(opts_.block_tokens);
  const size_t max_blocks = tokens.empty() ? 0 : (tokens.size() - 1) / B;
  uint64_t prev = 0;
  for (size_t i = 0; i < max_blocks; ++i) {
    const auto ids = tokens.subspan(i * B, B);
    const uint64_t h = chain(prev, ids);
    auto it = by_hash_.find(h);
    if (it == by_hash_.end()) break;
    Block& b = block(it->second);
    // A 64-bit hash can collide; the stored ids and parent make a hit exact.
    if (!b.hashed || b.parent_hash != prev || !std::equal(ids.begin(), ids.end(), b.tokens.begin()))
      break;
    if (b.refs == 0) lru_.erase(b.lru);
    ++b.refs;
    s.blocks.push_back(it->second);
    prev = h;
  }
  s.length = int64_t(s.blocks.size() * B);
  s.chain_hash = prev;
  return s.length;
}

Status KvBlockManager::reserve(SeqId seq, int64_t new_length) {
  const int64_t need = blocks_needed(seq, new_length);
  if (need > blocks_available())
    return Errorf("sequence %llu: KV cache full (%lld more blocks of %lld tokens needed, %lld free)",
                  (unsigned long long)seq, (long long)need, (long long)opts_.block_tokens,
                  (long long)blocks_available());
  Seq& s = seqs_[seq];
  for (int64_t i = 0; i < need; ++i) s.blocks.push_back(take_block());
  return Status::Ok();
}

void KvBlockManager::commit(SeqId seq, std::span<const int32_t> tokens) {
  Seq& s = seqs_[seq];
  const size_t B = size_t(opts_.block_tokens);
  for (int32_t t : tokens) {
    const size_t index = size_t(s.length) / B;
    ++s.length;
    if (!opts_.prefix_caching) continue;
    s.partial.push_back(t);
    if (s.partial.size() < B) continue;
    const uint64_t h = chain(s.chain_hash, s.partial);
    const int32_t id = s.blocks[index];
    // An identical block computed concurrently by another sequence is already cached;
    // this copy stays private and is freed with its sequence.
    if (by_hash_.find(h) == by_hash_.end()) {
      Block& b = block(id);
      b.hashed = true;
      b.hash = h;
      b.parent_hash = s.chain_hash;
      b.tokens = s.partial;
      by_hash_[h] = id;
    }
    s.chain_hash = h;
    s.partial.clear();
  }
}

void KvBlockManager::release(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  // Tail blocks first: they go to the LRU end that is evicted first, so a cached prefix
  // shrinks from its end and its head (shared by most prompts) lives longest.
  for (auto b = it->second.blocks.rbegin(); b != it->second.blocks.rend(); ++b) {
    Block& blk = block(*b);
    if (--blk.refs > 0) continue;
    if (blk.hashed) blk.lru = lru_.insert(lru_.end(), *b);
    else free_.push_back(*b);
  }
  seqs_.erase(it);
}

}  // namespace qw

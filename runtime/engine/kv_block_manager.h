// Paged-KV bookkeeping shared by every backend: which blocks each sequence holds, which
// are free, and which full blocks are kept for reuse (prefix caching). Storage stays with
// the backend (host floats, device arena); this class only hands out block ids.
//
// Prefix caching: a block whose positions are all written is content-addressed by a hash
// of its token ids chained with its predecessor's hash, so equal hashes mean equal
// prefixes. A new sequence attaches the longest run of such blocks matching its prompt
// instead of recomputing them. Blocks are reference-counted; when no sequence holds a
// hashed block it stays cached (evictable) and is reclaimed least-recently-used first
// when the free list runs dry. Only full blocks are shared and a sequence writes only past
// its attached prefix, so shared blocks are never written (no copy-on-write needed).
#pragma once
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "engine/executor.h"

namespace qw {

struct KvBlockManagerOptions {
  int64_t blocks = 0;        // ids first_block .. first_block + blocks - 1
  int64_t block_tokens = 16;
  int32_t first_block = 0;   // a backend may keep low ids for itself (a scratch block)
  bool prefix_caching = true;
};

class KvBlockManager {
 public:
  explicit KvBlockManager(KvBlockManagerOptions o);

  int64_t block_tokens() const { return opts_.block_tokens; }
  bool prefix_caching() const { return opts_.prefix_caching; }
  // Tokens whose KV is written (committed) for seq; 0 for an unknown sequence.
  int64_t length(SeqId seq) const;
  // seq's block table (empty for an unknown sequence).
  const std::vector<int32_t>& table(SeqId seq) const;
  // Blocks that growing seq to hold new_length positions would take from the pool.
  int64_t blocks_needed(SeqId seq, int64_t new_length) const;
  // Blocks a sequence can still get: free ones plus cached ones nobody holds.
  int64_t blocks_available() const { return int64_t(free_.size() + lru_.size()); }
  KvUsage usage() const;

  // For a sequence that holds no blocks: attaches the longest cached run of whole blocks
  // that prefixes `tokens`, leaving at least one token to compute (its logits are needed).
  // Returns the number of tokens now cached for seq (a multiple of block_tokens).
  int64_t attach_prefix(SeqId seq, std::span<const int32_t> tokens);
  // Gives seq blocks for positions [0, new_length). Fails (naming seq) when the pool
  // cannot; then nothing changes.
  Status reserve(SeqId seq, int64_t new_length);
  // Records that the KV of `tokens` is now written at positions [length(seq), ...); blocks
  // this completes become reusable by later prompts.
  void commit(SeqId seq, std::span<const int32_t> tokens);
  // Drops seq: its blocks return to the pool, hashed ones stay cached for reuse.
  void release(SeqId seq);

 private:
  struct Block {
    int32_t refs = 0;
    bool hashed = false;
    uint64_t hash = 0, parent_hash = 0;
    std::vector<int32_t> tokens;      // a hashed block's ids, checked on every hit
    std::list<int32_t>::iterator lru;  // valid while cached and unreferenced
  };
  struct Seq {
    std::vector<int32_t> blocks;
    int64_t length = 0;
    uint64_t chain_hash = 0;  // hash of the last full block (0 before the first)
    std::vector<int32_t> partial;  // ids of the positions of the block being filled
  };
  Block& block(int32_t id) { return blocks_[size_t(id - opts_.first_block)]; }
  int32_t take_block();
  uint64_t chain(uint64_t parent, std::span<const int32_t> tokens) const;

  KvBlockManagerOptions opts_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  std::list<int32_t> lru_;     // cached, unreferenced hashed blocks; front = oldest
  std::unordered_map<uint64_t, int32_t> by_hash_;
  std::unordered_map<SeqId, Seq> seqs_;
};

}  // namespace qw

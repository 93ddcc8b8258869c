#include "tokenizer/bpe.h"

#include <algorithm>
#include <bit>
#include <mutex>
#include <string>
#include <unordered_map>

namespace qw {
namespace {

constexpr uint64_t kHashMultiplier = 0x9E3779B97F4A7C15ull;  // Fibonacci hashing
constexpr uint64_t kEmptyKey = ~0ull;
// HF caches words shorter than this many bytes too; longer pieces are rare and unique.
constexpr size_t kMaxCachedPieceBytes = 64;
constexpr size_t kCacheShards = 16;
constexpr size_t kCacheEntriesPerShard = 8192;

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace

// Open-addressing map (left, right) -> (rank, merged id); lookups dominate encoding time.
struct BpeModel::MergeTable {
  struct Slot {
    uint64_t key = kEmptyKey;
    int32_t rank = 0;
    int32_t result = 0;
  };
  std::vector<Slot> slots;
  uint64_t mask = 0;
  int shift = 0;

  explicit MergeTable(const std::vector<Merge>& merges) {
    const size_t capacity = std::bit_ceil(std::max<size_t>(merges.size() * 2, 16));
    slots.resize(capacity);
    mask = capacity - 1;
    shift = 64 - std::countr_zero(capacity);
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const Merge& m = merges[rank];
      Slot& s = probe(pair_key(m.left, m.right));
      s.key = pair_key(m.left, m.right);
      s.rank = static_cast<int32_t>(rank);
      s.result = m.result;
    }
  }
  Slot& probe(uint64_t key) {
    size_t i = (key * kHashMultiplier) >> shift;
    while (slots[i].key != kEmptyKey && slots[i].key != key) i = (i + 1) & mask;
    return slots[i];
  }
  const Slot* find(int32_t left, int32_t right) const {
    const uint64_t key = pair_key(left, right);
    size_t i = (key * kHashMultiplier) >> shift;
    while (true) {
      const Slot& s = slots[i];
      if (s.key == key) return &s;
      if (s.key == kEmptyKey) return nullptr;
      i = (i + 1) & mask;
    }
  }
};

struct BpeModel::Cache {
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
  };
  std::array<Shard, kCacheShards> shards;
};

Expected<BpeModel> BpeModel::create(const std::vector<std::string>& vocab,
                                    const std::vector<Merge>& merges) {
  BpeModel m;
  m.byte_token_.fill(-1);
  for (size_t id = 0; id < vocab.size(); ++id) {
    if (vocab[id].size() == 1) m.byte_token_[static_cast<uint8_t>(vocab[id][0])] = int32_t(id);
  }
  for (size_t b = 0; b < m.byte_token_.size(); ++b) {
    if (m.byte_token_[b] < 0) {
      return Errorf("tokenizer vocab: no token for byte 0x%02zx (byte-level BPE needs all 256)", b);
    }
  }
  const auto n = static_cast<int32_t>(vocab.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const Merge& mg = merges[i];
    if (mg.left < 0 || mg.left >= n || mg.right < 0 || mg.right >= n || mg.result < 0 ||
        mg.result >= n || vocab[mg.result] != vocab[mg.left] + vocab[mg.right]) {
      return Errorf("tokenizer merges[%zu]: ids out of range or result is not left+right", i);
    }
  }
  m.merges_ = std::make_shared<MergeTable>(merges);
  m.cache_ = std::make_shared<Cache>();
  return m;
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1) {
    out.push_back(byte_token_[static_cast<uint8_t>(piece[0])]);
    return;
  }
  if (piece.size() > kMaxCachedPieceBytes) {
    merge_uncached(piece, out);
    return;
  }
  Cache::Shard& shard = cache_->shards[StringHash{}(piece) % kCacheShards];
  {
    std::lock_guard lock(shard.mu);
    const auto it = shard.map.find(piece);
    if (it != shard.map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_uncached(piece, out);
  std::lock_guard lock(shard.mu);
  if (shard.map.size() >= kCacheEntriesPerShard) shard.map.clear();  // bounded memory
  shard.map.emplace(std::string(piece), std::vector<int32_t>(out.begin() + first, out.end()));
}

void BpeModel::merge_uncached(std::string_view piece, std::vector<int32_t>& out) const {
  // Symbols form a doubly linked list over the piece's bytes; a merged-away symbol gets
  // len 0. Heap entries are (rank, pos) and are checked for staleness when popped, as in HF.
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  struct Candidate {
    int32_t rank, pos, result;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  const auto n = static_cast<int32_t>(piece.size());
  symbols.resize(piece.size());
  heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_token_[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1, true};
  }
  const MergeTable& table = *merges_;
  const auto push = [&](int32_t pos) {
    const Symbol& s = symbols[pos];
    if (s.next < 0) return;
    if (const auto* m = table.find(s.id, symbols[s.next].id)) {
      heap.push_back({m->rank, pos, m->result});
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    const auto* m = table.find(left.id, right.id);
    if (m == nullptr || m->result != top.result) continue;  // stale entry
    left.id = top.result;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push(left.prev);
    push(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace qw

// KvBlockManager: block accounting, prefix reuse (longest full-block prefix, never the last
// token), reference counts, LRU reclaim of cached blocks, and prefix caching switched off.
#include <doctest/doctest.h>

#include <map>
#include <numeric>
#include <random>
#include <set>

#include "engine/kv_block_manager.h"

using namespace qw;

namespace {

std::vector<int32_t> iota_tokens(int n, int first = 100) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), first);
  return v;
}

// Runs a sequence through the manager as an executor would: attach, reserve, commit.
int64_t run_seq(KvBlockManager& m, SeqId id, const std::vector<int32_t>& tokens) {
  const int64_t reused = m.attach_prefix(id, tokens);
  REQUIRE(m.reserve(id, int64_t(tokens.size())).ok());
  m.commit(id, std::span<const int32_t>(tokens).subspan(size_t(reused)));
  CHECK(m.length(id) == int64_t(tokens.size()));
  return reused;
}

}  // namespace

TEST_CASE("blocks are handed out and returned") {
  KvBlockManager m({8, 4, 1, false});
  CHECK(m.blocks_available() == 8);
  CHECK(m.blocks_needed(1, 9) == 3);
  REQUIRE(m.reserve(1, 9).ok());
  CHECK(m.table(1).size() == 3);
  for (int32_t b : m.table(1)) CHECK((b >= 1 && b <= 8));  // first_block = 1
  CHECK(m.usage().blocks_used == 3);
  CHECK(m.blocks_needed(1, 12) == 0);
  CHECK(m.blocks_needed(1, 13) == 1);
  Status full = m.reserve(2, 4 * 6);
  CHECK(!full.ok());
  CHECK(full.message().find("sequence 2") != std::string::npos);
  CHECK(m.table(2).empty());  // a failed reserve takes nothing
  m.release(1);
  CHECK(m.usage().blocks_used == 0);
  CHECK(m.blocks_available() == 8);
}

TEST_CASE("a prompt reuses the longest cached full-block prefix") {
  KvBlockManager m({16, 4, 0, true});
  const auto a = iota_tokens(10);  // blocks [0,4) [4,8) full, [8,10) partial
  CHECK(run_seq(m, 1, a) == 0);
  const std::vector<int32_t> a_blocks = m.table(1);

  // Same first 9 tokens, then different: two full blocks are shared.
  auto b = a;
  b[9] = 7;
  b.push_back(8);
  CHECK(run_seq(m, 2, b) == 8);
  CHECK(m.table(2)[0] == a_blocks[0]);
  CHECK(m.table(2)[1] == a_blocks[1]);
  CHECK(m.table(2)[2] != a_blocks[2]);  // the partial block is never shared
  CHECK(m.usage().blocks_used == 3 + 1 + 0);  // shared blocks count once

  // Differs inside the second block: only the first is shared.
  auto c = a;
  c[5] = 1;
  CHECK(run_seq(m, 3, c) == 4);

  // Differs in the first token: nothing shared, however much follows matches.
  auto d = a;
  d[0] = 1;
  CHECK(run_seq(m, 4, d) == 0);
}

TEST_CASE("the last prompt token is always computed") {
  KvBlockManager m({16, 4, 0, true});
  const auto a = iota_tokens(8);  // exactly two full blocks
  run_seq(m, 1, a);
  // The same 8 tokens: reusing both blocks would leave nothing to compute logits from.
  CHECK(m.attach_prefix(2, a) == 4);
  // 9 tokens extending it: both blocks reused.
  auto b = a;
  b.push_back(1);
  CHECK(m.attach_prefix(3, b) == 8);
  // A one-token prompt reuses nothing.
  CHECK(m.attach_prefix(4, std::vector<int32_t>{100}) == 0);
}

TEST_CASE("released full blocks stay cached until the pool needs them") {
  KvBlockManager m({4, 4, 0, true});
  const auto a = iota_tokens(9);  // 3 blocks: 2 full, 1 partial
  run_seq(m, 1, a);
  m.release(1);
  KvUsage u = m.usage();
  CHECK(u.blocks_used == 0);
  CHECK(u.blocks_cached == 2);  // the partial block went back to the free list
  CHECK(m.blocks_available() == 4);

  // Reuse after release.
  CHECK(run_seq(m, 2, a) == 8);
  m.release(2);

  // A sequence needing 3 blocks takes the free ones first, then the least recently used
  // cached block: the tail of a's prefix goes before its head.
  const auto other = iota_tokens(12, 5000);
  run_seq(m, 3, other);
  m.release(3);
  CHECK(m.attach_prefix(4, a) == 4);  // a's first block survived, its second did not
  m.release(4);

  // Everything reclaimed under pressure: a's prefix is gone.
  REQUIRE(m.reserve(5, 16).ok());
  m.release(5);
  CHECK(m.attach_prefix(6, a) == 0);
}

TEST_CASE("a shared block stays while any sequence holds it") {
  KvBlockManager m({4, 4, 0, true});
  const auto a = iota_tokens(5);
  run_seq(m, 1, a);
  CHECK(run_seq(m, 2, a) == 4);
  m.release(1);
  CHECK(m.usage().blocks_used == 2);  // shared block (held by 2) + 2's own partial block
  // The pool cannot take the shared block away from sequence 2.
  CHECK(m.blocks_available() == 2);
  CHECK(!m.reserve(3, 12).ok());
  m.release(2);
  CHECK(m.usage().blocks_cached == 1);
}

TEST_CASE("identical blocks computed side by side: one is cached, both are freed") {
  KvBlockManager m({8, 4, 0, true});
  const auto a = iota_tokens(5);
  // Both attach before either commits (same engine step): no reuse, two private copies.
  CHECK(m.attach_prefix(1, a) == 0);
  CHECK(m.attach_prefix(2, a) == 0);
  REQUIRE(m.reserve(1, 5).ok());
  REQUIRE(m.reserve(2, 5).ok());
  m.commit(1, a);
  m.commit(2, a);
  m.release(1);
  m.release(2);
  CHECK(m.usage().blocks_cached == 1);
  CHECK(m.blocks_available() == 8);
  CHECK(m.attach_prefix(3, a) == 4);
}

TEST_CASE("prefix caching off: nothing is reused or kept") {
  KvBlockManager m({8, 4, 0, false});
  const auto a = iota_tokens(9);
  run_seq(m, 1, a);
  m.release(1);
  CHECK(m.usage().blocks_cached == 0);
  CHECK(run_seq(m, 2, a) == 0);
}

TEST_CASE("random workloads: reused blocks always hold the prompt's own tokens") {
  // A shadow of what each block's KV would hold (the token id written at each slot), kept
  // by replaying every commit. Whatever the manager hands out or shares, a sequence must
  // only ever write blocks no other live sequence holds, and a reused prefix must read back
  // exactly the tokens of the new prompt at the same positions.
  constexpr int64_t B = 4, kBlocks = 48;
  std::mt19937_64 rng(12);
  for (bool caching : {true, false}) {
    KvBlockManager m({kBlocks, B, 3, caching});
    std::map<int32_t, std::vector<int32_t>> shadow;  // block id -> token per slot (-1: unwritten)
    std::map<SeqId, std::vector<int32_t>> live;      // seq -> its tokens so far
    // A few shared stems so prompts overlap often.
    std::vector<std::vector<int32_t>> stems(4);
    for (auto& s : stems) {
      s.resize(size_t(4 + rng() % 20));
      for (auto& t : s) t = int32_t(rng() % 5);
    }
    SeqId next = 1;
    int64_t reused_total = 0;
    for (int op = 0; op < 4000; ++op) {
      const int kind = int(rng() % 10);
      if (kind < 3 || live.empty()) {  // admit a new prompt
        std::vector<int32_t> prompt = stems[rng() % stems.size()];
        const size_t extra = rng() % 12;
        for (size_t i = 0; i < extra; ++i) prompt.push_back(int32_t(rng() % 5));
        const SeqId id = next++;
        const int64_t reused = m.attach_prefix(id, prompt);
        REQUIRE(reused % B == 0);
        REQUIRE(reused < int64_t(prompt.size()));
        const auto& table = m.table(id);
        for (int64_t p = 0; p < reused; ++p)
          REQUIRE(shadow[table[size_t(p / B)]][size_t(p % B)] == prompt[size_t(p)]);
        reused_total += reused;
        if (!m.reserve(id, int64_t(prompt.size())).ok()) {
          m.release(id);
          continue;
        }
        live[id] = std::vector<int32_t>(prompt.begin(), prompt.begin() + reused);
        // Commit the rest as one chunk.
        std::vector<int32_t> rest(prompt.begin() + reused, prompt.end());
        auto it = live.find(id);
        for (size_t j = 0; j < rest.size(); ++j) {
          const int64_t p = int64_t(it->second.size() + j);
          const int32_t blk = m.table(id)[size_t(p / B)];
          for (const auto& [other, toks] : live)
            if (other != id)
              for (int32_t ob : m.table(other)) REQUIRE(ob != blk);  // never write a shared block
          auto& slots = shadow[blk];
          slots.resize(size_t(B), -1);
          slots[size_t(p % B)] = rest[j];
        }
        m.commit(id, rest);
        it->second.insert(it->second.end(), rest.begin(), rest.end());
      } else if (kind < 8) {  // decode one token on a random live sequence
        auto it = live.begin();
        std::advance(it, long(rng() % live.size()));
        const int64_t len = int64_t(it->second.size());
        if (!m.reserve(it->first, len + 1).ok()) continue;
        const int32_t t = int32_t(rng() % 5);
        const int32_t blk = m.table(it->first)[size_t(len / B)];
        for (const auto& [other, toks] : live)
          if (other != it->first)
            for (int32_t ob : m.table(other)) REQUIRE(ob != blk);
        auto& slots = shadow[blk];
        slots.resize(size_t(B), -1);
        slots[size_t(len % B)] = t;
        m.commit(it->first, std::vector<int32_t>{t});
        it->second.push_back(t);
      } else {  // finish a sequence
        auto it = live.begin();
        std::advance(it, long(rng() % live.size()));
        m.release(it->first);
        live.erase(it);
      }
      // Blocks in use are exactly the distinct blocks of live tables; ids stay in range.
      std::set<int32_t> held;
      for (const auto& [id, toks] : live)
        for (int32_t blk : m.table(id)) {
          REQUIRE((blk >= 3 && blk < 3 + kBlocks));
          held.insert(blk);
        }
      const KvUsage u = m.usage();
      REQUIRE(u.blocks_used == int64_t(held.size()));
      REQUIRE(m.blocks_available() == kBlocks - int64_t(held.size()));
      for (const auto& [id, toks] : live) REQUIRE(m.length(id) == int64_t(toks.size()));
    }
    if (caching) CHECK(reused_total > 1000);
    else CHECK(reused_total == 0);
  }
}

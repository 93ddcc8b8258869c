// Byte-level BPE: merges a piece's bytes by merge rank exactly as HF tokenizers' BPE model
// (Word::merge_all): repeatedly the adjacent pair with the lowest rank, the leftmost on ties.
// A binary heap with lazy invalidation makes a piece of n bytes O(n log n), so long runs
// without spaces do not stall.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tokenizer/tokenizer_data.h"

namespace qw {

class BpeModel {
 public:
  static Expected<BpeModel> create(const std::vector<std::string>& vocab,
                                   const std::vector<Merge>& merges);
  // Appends the token ids of one pre-tokenized piece (raw bytes, non-empty) to out.
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

 private:
  struct MergeTable;
  struct Cache;
  BpeModel() = default;
  void merge_uncached(std::string_view piece, std::vector<int32_t>& out) const;

  std::array<int32_t, 256> byte_token_{};
  std::shared_ptr<const MergeTable> merges_;
  std::shared_ptr<Cache> cache_;  // shared and internally locked: encode is const
};

}  // namespace qw

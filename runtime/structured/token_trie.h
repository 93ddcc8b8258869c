// The vocabulary as a byte trie, flattened in preorder so a mask walk is one forward loop:
// node i has a byte, a depth and the index just past its subtree (skip), so a dead prefix
// skips every token that starts with it. Built once per tokenizer (~150k tokens).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace qw {

struct TokenTrie {
  std::vector<uint8_t> byte;
  std::vector<uint16_t> depth;   // 1 for the first byte of a token
  std::vector<uint32_t> skip;    // first node after this node's subtree
  std::vector<uint32_t> tok_off; // tokens ending at node i: tok_ids[tok_off[i] .. tok_off[i+1])
  std::vector<int32_t> tok_ids;
  std::vector<std::string> token_bytes;  // by id; empty for special/unknown ids
  size_t max_depth = 0;
  int32_t vocab_size = 0;  // tokenizer ids

  size_t nodes() const { return byte.size(); }
  // Special tokens (<|im_end|>, ...) are left out: they are never part of the text a
  // grammar describes; end-of-sequence ids are allowed separately.
  static std::shared_ptr<const TokenTrie> build(const Tokenizer& tok);
};

}  // namespace qw

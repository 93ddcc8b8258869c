// Everything the tokenizer needs at run time, in plain form: what build_tokenizer_blob
// extracts from an HF checkpoint and what the artifact's tokenizer section stores.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace qw {

enum class Normalizer : uint32_t { kNone = 0, kNfc = 1 };

struct AddedTokenData {
  int32_t id = 0;
  std::string content;  // matched in input text as is (normalized=false)
  bool special = false;
  bool lstrip = false;  // swallow white space before the token
  bool rstrip = false;  // swallow white space after the token
};

struct Merge {
  int32_t left = 0, right = 0, result = 0;  // rank = index in TokenizerData::merges
};

struct TokenizerData {
  Normalizer normalizer = Normalizer::kNfc;
  std::string split_regex;         // HF (Oniguruma) syntax, as in tokenizer.json
  std::vector<std::string> vocab;  // BPE token id -> the raw bytes it stands for
  std::vector<Merge> merges;
  std::vector<AddedTokenData> added_tokens;
  std::vector<int32_t> eos_ids;
  std::optional<int32_t> pad_id;
  std::string chat_template;  // Jinja source, empty when the checkpoint has none
};

// Compact little-endian serialization (the artifact writer compresses it).
std::vector<uint8_t> serialize_tokenizer_data(const TokenizerData& data);
Expected<TokenizerData> deserialize_tokenizer_data(std::span<const uint8_t> blob);

}  // namespace qw

// GPT-2 byte-level alphabet: the bijection between the 256 byte values and printable code
// points that byte-level BPE vocabularies are written in (HF ByteLevel bytes_char()).
#pragma once
#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace qw::byte_level {

// Code point that stands for byte b in vocabulary strings.
char32_t byte_to_char(uint8_t b);

// Converts a vocabulary string to the bytes it stands for; nullopt when it contains a code
// point outside the byte-level alphabet.
std::optional<std::string> decode_token(std::string_view token);

// Converts raw bytes to the vocabulary-string form (inverse of decode_token).
std::string encode_bytes(std::string_view bytes);

}  // namespace qw::byte_level

// UTF-8 helpers shared by the encoder (input validation), the decoder (lossy conversion as
// Python's bytes.decode("utf-8", errors="replace") does) and the streaming decoder.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qw::utf8 {

inline constexpr char32_t kReplacement = 0xFFFD;
inline constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

// Length of the valid UTF-8 sequence starting at s[0], or 0 when s starts with an invalid
// sequence or one cut off by the end of s. `*maximal_subpart` receives the number of bytes
// that form the maximal subpart of an ill-formed sequence (Unicode 3.9, U+FFFD substitution
// of maximal subparts; what CPython and Rust's from_utf8_lossy both implement): those bytes
// are replaced by one U+FFFD.
size_t valid_sequence_length(std::string_view s, size_t* maximal_subpart);

// True when s is valid UTF-8.
bool is_valid(std::string_view s);

// Appends s to out, replacing each maximal ill-formed subpart with U+FFFD.
void append_lossy(std::string_view s, std::string& out);

// Length of the longest prefix of s that is safe to emit while more bytes may follow:
// everything except a trailing incomplete-but-so-far-valid sequence.
size_t complete_prefix_length(std::string_view s);

// Decodes the code point at s[i] (s must be valid UTF-8) and advances i.
inline char32_t next(std::string_view s, size_t& i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  if (b0 < 0xE0) {
    char32_t c = ((b0 & 0x1Fu) << 6) | (static_cast<uint8_t>(s[i + 1]) & 0x3Fu);
    i += 2;
    return c;
  }
  if (b0 < 0xF0) {
    char32_t c = ((b0 & 0x0Fu) << 12) | ((static_cast<uint8_t>(s[i + 1]) & 0x3Fu) << 6) |
                 (static_cast<uint8_t>(s[i + 2]) & 0x3Fu);
    i += 3;
    return c;
  }
  char32_t c = ((b0 & 0x07u) << 18) | ((static_cast<uint8_t>(s[i + 1]) & 0x3Fu) << 12) |
               ((static_cast<uint8_t>(s[i + 2]) & 0x3Fu) << 6) |
               (static_cast<uint8_t>(s[i + 3]) & 0x3Fu);
  i += 4;
  return c;
}

// Appends the UTF-8 encoding of c to out.
void append(char32_t c, std::string& out);

}  // namespace qw::utf8

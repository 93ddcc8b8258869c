#include "tokenizer/utf8.h"

namespace qw::utf8 {
namespace {

bool is_continuation(uint8_t b) {
  return (b & 0xC0) == 0x80;
}

// Allowed range of the second byte for a given lead byte (Unicode Table 3-7); this is what
// rules out overlong forms, surrogates and code points above U+10FFFF.
struct SecondByteRange {
  uint8_t lo, hi;
};
SecondByteRange second_byte_range(uint8_t lead) {
  if (lead == 0xE0) return {0xA0, 0xBF};
  if (lead == 0xED) return {0x80, 0x9F};
  if (lead == 0xF0) return {0x90, 0xBF};
  if (lead == 0xF4) return {0x80, 0x8F};
  return {0x80, 0xBF};
}

// Sequence length announced by a lead byte, 0 for bytes that can never start one.
size_t lead_length(uint8_t b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

}  // namespace

size_t valid_sequence_length(std::string_view s, size_t* maximal_subpart) {
  const auto b0 = static_cast<uint8_t>(s[0]);
  const size_t need = lead_length(b0);
  if (need == 0) {
    *maximal_subpart = 1;
    return 0;
  }
  if (need == 1) return 1;
  const SecondByteRange r = second_byte_range(b0);
  size_t got = 1;
  for (; got < need && got < s.size(); ++got) {
    const auto b = static_cast<uint8_t>(s[got]);
    const bool ok = got == 1 ? (b >= r.lo && b <= r.hi) : is_continuation(b);
    if (!ok) break;
  }
  if (got == need) return need;
  *maximal_subpart = got;
  return 0;
}

bool is_valid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t bad = 0;
    const size_t n = valid_sequence_length(s.substr(i), &bad);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void append_lossy(std::string_view s, std::string& out) {
  size_t i = 0;
  size_t run = 0;  // start of the current run of valid bytes, copied in one append
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t bad = 0;
    const size_t n = valid_sequence_length(s.substr(i), &bad);
    if (n > 0) {
      i += n;
      continue;
    }
    out.append(s.substr(run, i - run));
    out.append(kReplacementUtf8);
    i += bad;
    run = i;
  }
  out.append(s.substr(run));
}

size_t complete_prefix_length(std::string_view s) {
  // A sequence is at most 4 bytes: only the last 3 bytes can be an unfinished one.
  constexpr size_t kMaxHeld = 3;
  const size_t from = s.size() > kMaxHeld ? s.size() - kMaxHeld : 0;
  for (size_t start = from; start < s.size(); ++start) {
    const auto b = static_cast<uint8_t>(s[start]);
    const size_t need = lead_length(b);
    if (need <= 1 || start + need <= s.size()) continue;
    // Lead byte whose sequence runs past the end: hold it back if it is valid so far.
    size_t bad = 0;
    if (valid_sequence_length(s.substr(start), &bad) == 0 && bad == s.size() - start) {
      return start;
    }
  }
  return s.size();
}

void append(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

}  // namespace qw::utf8

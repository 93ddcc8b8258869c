#include "tokenizer/byte_level.h"

#include <unordered_map>

#include "tokenizer/utf8.h"

namespace qw::byte_level {
namespace {

// Printable Latin-1 ranges that map to themselves; every other byte maps to 256 + n in order.
constexpr char32_t kShiftBase = 256;
bool maps_to_itself(unsigned b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Tables {
  std::array<char32_t, 256> to_char{};
  std::unordered_map<char32_t, uint8_t> to_byte;
  Tables() {
    char32_t next = kShiftBase;
    for (unsigned b = 0; b < 256; ++b) {
      to_char[b] = maps_to_itself(b) ? b : next++;
      to_byte[to_char[b]] = static_cast<uint8_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t byte_to_char(uint8_t b) {
  return tables().to_char[b];
}

std::optional<std::string> decode_token(std::string_view token) {
  if (!utf8::is_valid(token)) return std::nullopt;
  const Tables& t = tables();
  std::string out;
  for (size_t i = 0; i < token.size();) {
    const auto it = t.to_byte.find(utf8::next(token, i));
    if (it == t.to_byte.end()) return std::nullopt;
    out.push_back(static_cast<char>(it->second));
  }
  return out;
}

std::string encode_bytes(std::string_view bytes) {
  std::string out;
  for (char b : bytes) utf8::append(byte_to_char(static_cast<uint8_t>(b)), out);
  return out;
}

}  // namespace qw::byte_level

#include "tokenizer/nfc.h"

#include <algorithm>
#include <array>
#include <bitset>
#include <cstdint>
#include <memory>
#include <vector>

#include "tokenizer/utf8.h"

namespace qw {
namespace {

struct CccEntry {
  char32_t cp;
  uint8_t ccc;
};
struct DecompEntry {
  char32_t cp;
  uint16_t offset;
  uint8_t length;
};
struct ComposeEntry {
  char32_t first, second, composite;
};
struct CpRange {
  char32_t lo, hi;
};

#include "tokenizer/unicode_tables.inc"

constexpr char32_t kMaxCodePoint = 0x10FFFF;
// U+0300 is the first code point that is not NFC-stable; its UTF-8 lead byte is 0xCC, so text
// with no byte >= 0xCC is NFC without decoding.
constexpr uint8_t kFirstUnstableLeadByte = 0xCC;

// Hangul syllable composition (Unicode 3.12), done arithmetically as every normalizer does.
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// Bit per code point: set when the code point is not NFC-stable (136 KiB, built once).
const std::bitset<kMaxCodePoint + 1>& unstable_set() {
  static const auto* set = [] {
    auto* s = new std::bitset<kMaxCodePoint + 1>();
    for (const CpRange& r : kUnstable) {
      for (char32_t c = r.lo; c <= r.hi; ++c) s->set(c);
    }
    return s;
  }();
  return *set;
}

bool is_unstable(char32_t c) {
  return unstable_set().test(c);
}

uint8_t combining_class(char32_t c) {
  const auto* it = std::lower_bound(std::begin(kCcc), std::end(kCcc), c,
                                    [](const CccEntry& e, char32_t v) { return e.cp < v; });
  return it != std::end(kCcc) && it->cp == c ? it->ccc : 0;
}

void decompose(char32_t c, std::vector<char32_t>& out) {
  if (c >= kSBase && c < kSBase + kSCount) {
    const char32_t s = c - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto* it = std::lower_bound(std::begin(kDecomp), std::end(kDecomp), c,
                                    [](const DecompEntry& e, char32_t v) { return e.cp < v; });
  if (it != std::end(kDecomp) && it->cp == c) {
    out.insert(out.end(), kDecompPool + it->offset, kDecompPool + it->offset + it->length);
  } else {
    out.push_back(c);
  }
}

// Primary composite of (a, b), or 0 when they do not compose.
char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const auto* it =
      std::lower_bound(std::begin(kCompose), std::end(kCompose), std::pair{a, b},
                       [](const ComposeEntry& e, std::pair<char32_t, char32_t> v) {
                         return e.first != v.first ? e.first < v.first : e.second < v.second;
                       });
  return it != std::end(kCompose) && it->first == a && it->second == b ? it->composite : 0;
}

// Normalizes one segment that starts at a stable code point (or the text start) and ends
// before the next stable one: decompose, canonical reordering, canonical composition.
void normalize_segment(std::string_view seg, std::string& out) {
  std::vector<char32_t> cps;
  for (size_t i = 0; i < seg.size();) decompose(utf8::next(seg, i), cps);
  std::vector<uint8_t> ccc(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) ccc[i] = combining_class(cps[i]);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (ccc[i] == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && ccc[j] != 0) ++j;
    std::vector<std::pair<uint8_t, char32_t>> run;
    for (size_t k = i; k < j; ++k) run.emplace_back(ccc[k], cps[k]);
    std::stable_sort(run.begin(), run.end(),
                     [](const auto& x, const auto& y) { return x.first < y.first; });
    for (size_t k = i; k < j; ++k) std::tie(ccc[k], cps[k]) = run[k - i];
    i = j;
  }
  // Canonical composition (Unicode 3.11 D117).
  std::vector<char32_t> result;
  std::vector<uint8_t> result_ccc;
  size_t starter = SIZE_MAX;
  for (size_t i = 0; i < cps.size(); ++i) {
    const char32_t c = cps[i];
    const uint8_t cc = ccc[i];
    if (starter != SIZE_MAX) {
      const uint8_t last_cc = result_ccc.back();
      const bool blocked = result.size() - 1 != starter && (last_cc == 0 || last_cc >= cc);
      if (!blocked) {
        const char32_t composite = compose_pair(result[starter], c);
        if (composite != 0) {
          result[starter] = composite;
          continue;
        }
      }
    }
    result.push_back(c);
    result_ccc.push_back(cc);
    if (cc == 0) starter = result.size() - 1;
  }
  for (char32_t c : result) utf8::append(c, out);
}

}  // namespace

bool nfc_quick_check(std::string_view text) {
  for (char ch : text) {
    if (static_cast<uint8_t>(ch) >= kFirstUnstableLeadByte) {
      size_t i = 0;
      while (i < text.size()) {
        if (is_unstable(utf8::next(text, i))) return false;
      }
      return true;
    }
  }
  return true;
}

void nfc_normalize(std::string_view text, std::string& out) {
  size_t i = 0;
  size_t copied = 0;      // text[copied, i) is stable and not yet appended
  size_t last_start = 0;  // start of the last stable code point seen
  while (i < text.size()) {
    const size_t here = i;
    const char32_t c = utf8::next(text, i);
    if (!is_unstable(c)) {
      last_start = here;
      continue;
    }
    // The unstable code point may compose with the stable one before it: start there.
    const size_t seg_begin = std::max(copied, last_start);
    out.append(text.substr(copied, seg_begin - copied));
    size_t seg_end = i;
    while (seg_end < text.size()) {
      size_t probe = seg_end;
      if (!is_unstable(utf8::next(text, probe))) break;
      seg_end = probe;
    }
    normalize_segment(text.substr(seg_begin, seg_end - seg_begin), out);
    copied = i = last_start = seg_end;
  }
  out.append(text.substr(copied));
}

}  // namespace qw

#include "quant/int4_layout.h"

#include <cstring>

namespace qw::quant {

void pack_int4(const uint8_t* codes, int64_t k, int64_t n_pad, uint32_t* out) {
  std::memset(out, 0, size_t(int4_packed_words(k, n_pad)) * sizeof(uint32_t));
  for (int64_t kk = 0; kk < k; ++kk) {
    const uint8_t* row = codes + kk * n_pad;
    for (int64_t n = 0; n < n_pad; ++n) {
      const Int4Slot s = int4_slot(kk, n, n_pad);
      out[s.word] |= uint32_t(row[n] & 0xfu) << s.shift;
    }
  }
}

}  // namespace qw::quant

// Element conversion of checkpoint weights into the artifact dtype.
#pragma once
#include <atomic>
#include <cstdint>

#include "core/dtype.h"
#include "core/status.h"

namespace qw {

struct ConversionStats {
  std::atomic<uint64_t> elements{0};
  std::atomic<uint64_t> overflows{0};   // finite source values that became +-inf
  std::atomic<uint64_t> underflows{0};  // non-zero source values that became zero
  std::atomic<uint64_t> nonfinite{0};   // inf/nan already in the source
};

// Converts `count` elements from `src` (dtype `from`) to `dst` (dtype `to`), rounding to
// nearest even. Supported: {BF16, F16, F32} -> {F16, BF16, F32}.
Status convert_elements(const uint8_t* src, DType from, uint8_t* dst, DType to, uint64_t count,
                        ConversionStats& stats);

}  // namespace qw

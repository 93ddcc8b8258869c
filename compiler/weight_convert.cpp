#include "compiler/weight_convert.h"

#include <cmath>
#include <cstring>
#include <string>

#include "core/half.h"

namespace qw {

namespace {

float load(const uint8_t* p, DType t, uint64_t i) {
  switch (t) {
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return bf16_to_f32(h);
    }
    case DType::F16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return f16_to_f32(h);
    }
    default: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return f;
    }
  }
}

template <DType From, DType To>
void convert_typed(const uint8_t* src, uint8_t* dst, uint64_t count, ConversionStats& stats) {
  uint64_t over = 0, under = 0, nonfinite = 0;
  for (uint64_t i = 0; i < count; ++i) {
    const float f = load(src, From, i);
    float back;
    if constexpr (To == DType::F16) {
      const uint16_t h = f32_to_f16(f);
      std::memcpy(dst + 2 * i, &h, 2);
      back = f16_to_f32(h);
    } else if constexpr (To == DType::BF16) {
      const uint16_t h = f32_to_bf16(f);
      std::memcpy(dst + 2 * i, &h, 2);
      back = bf16_to_f32(h);
    } else {
      std::memcpy(dst + 4 * i, &f, 4);
      back = f;
    }
    if (!std::isfinite(f)) {
      ++nonfinite;
    } else if (std::isinf(back)) {
      ++over;
    } else if (back == 0.0f && f != 0.0f) {
      ++under;
    }
  }
  stats.elements += count;
  stats.overflows += over;
  stats.underflows += under;
  stats.nonfinite += nonfinite;
}

template <DType From>
Status convert_from(const uint8_t* src, uint8_t* dst, DType to, uint64_t count,
                    ConversionStats& stats) {
  switch (to) {
    case DType::F16: convert_typed<From, DType::F16>(src, dst, count, stats); return Status::Ok();
    case DType::BF16: convert_typed<From, DType::BF16>(src, dst, count, stats); return Status::Ok();
    case DType::F32: convert_typed<From, DType::F32>(src, dst, count, stats); return Status::Ok();
    default: return Status::Error("cannot convert to " + std::string(dtype_name(to)));
  }
}

}  // namespace

Status convert_elements(const uint8_t* src, DType from, uint8_t* dst, DType to, uint64_t count,
                        ConversionStats& stats) {
  if (from == to) {  // exact copy, nothing to count but non-finite values
    std::memcpy(dst, src, count * dtype_size(from));
    stats.elements += count;
    return Status::Ok();
  }
  switch (from) {
    case DType::BF16: return convert_from<DType::BF16>(src, dst, to, count, stats);
    case DType::F16: return convert_from<DType::F16>(src, dst, to, count, stats);
    case DType::F32: return convert_from<DType::F32>(src, dst, to, count, stats);
    default: return Status::Error("cannot convert from " + std::string(dtype_name(from)));
  }
}

}  // namespace qw

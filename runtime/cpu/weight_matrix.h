// A read-only view of one 2-D weight (or 1-D vector) inside the artifact mapping, in the
// artifact's own dtype. The CPU runtime never makes a second full copy of the weights:
// kernels convert rows to fp32 on the fly into small per-thread buffers.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/dequantize.h"

namespace qw::cpu {

struct WeightMatrix {
  std::string name;  // tensor name, for error messages
  DType dtype = DType::F32;
  const uint8_t* data = nullptr;
  int64_t rows = 0;  // output features (row-major [rows, cols], HF's [out, in])
  int64_t cols = 0;  // input features
  // INT4 (GPTQ) weights: rows are dequantized to fp32 as they are read (data = packed words).
  std::shared_ptr<const quant::Int4Matrix> int4;

  bool empty() const { return data == nullptr; }
  float at(int64_t r, int64_t c) const {
    const int64_t i = r * cols + c;
    switch (dtype) {
      case DType::F16:
        return f16_to_f32(reinterpret_cast<const uint16_t*>(data)[i]);
      case DType::BF16:
        return bf16_to_f32(reinterpret_cast<const uint16_t*>(data)[i]);
      default:
        return reinterpret_cast<const float*>(data)[i];
    }
  }
};

// Whether the kernels accept this dtype for weights (F32, F16, BF16).
inline bool is_float_weight_dtype(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

}  // namespace qw::cpu

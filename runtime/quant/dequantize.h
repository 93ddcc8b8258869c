// CPU reference dequantization of the artifact's INT4 weights to fp32. The value of element
// (n, c) of a quantized W [rows out, cols in] is, exactly in fp32 (the product of an fp16 and
// an integer in [-16, 15] is representable):
//   k = packed row of input feature c (identity unless act-order permuted it)
//   g = k / group_size
//   W[n, c] = float(scales[g][n]) * float(code(k, n) - zero(g, n))
// with zero(g, n) = zeros[g][n], or zero_point when the tensor is symmetric (no zeros).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace qw::quant {

struct Int4Matrix {
  std::string name;            // weight tensor name, for messages
  int64_t rows = 0;            // logical output features (N)
  int64_t cols = 0;            // logical input features (K)
  int64_t padded_rows = 0;     // N rounded up to 64: the packed/scales/zeros row stride
  int64_t group_size = 0;      // input features per scale group, in packed order
  int zero_point = 8;          // used when zeros == nullptr
  const uint32_t* packed = nullptr;  // int4_packed_words(cols, padded_rows) words
  const uint16_t* scales = nullptr;  // fp16 [cols / group_size][padded_rows]
  const uint8_t* zeros = nullptr;    // [cols / group_size][padded_rows] or null
  std::vector<int32_t> perm;           // packed row k holds input feature perm[k]; empty = identity
  const int32_t* perm_tensor = nullptr;  // the same in the artifact's mapping (device copies)
  std::vector<int32_t> packed_row_of;  // inverse of perm; empty = identity

  int64_t groups() const { return group_size ? cols / group_size : 0; }
};

// Checks the geometry (divisibility, perm is a permutation) and fills packed_row_of.
Status finalize_int4_matrix(Int4Matrix& m);

// out[(r - r0) * ld + (c - c0)] = W[r, c] for r in [r0, r1), c in [c0, c1), columns in the
// logical (HF) input order, so this drops into a row converter of the CPU executor.
Status dequantize_int4_rows(const Int4Matrix& m, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                            float* out, int64_t ld);
// Same without the range checks (callers that validated once).
void dequantize_int4_rows_unchecked(const Int4Matrix& m, int64_t r0, int64_t r1, int64_t c0,
                                    int64_t c1, float* out, int64_t ld);

}  // namespace qw::quant

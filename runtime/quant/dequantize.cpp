#include "quant/dequantize.h"

#include "core/half.h"
#include "quant/int4_layout.h"

namespace qw::quant {

Status finalize_int4_matrix(Int4Matrix& m) {
  const std::string& t = m.name;
  if (m.rows <= 0 || m.cols <= 0) return Status::Error("tensor " + t + ": empty quantized shape");
  if (m.padded_rows != int4_padded_rows(m.rows))
    return Status::Error("tensor " + t + ": padded rows " + std::to_string(m.padded_rows) +
                         " != rows rounded up to 64");
  if (m.cols % kInt4TileK != 0)
    return Status::Error("tensor " + t + ": input features " + std::to_string(m.cols) +
                         " not a multiple of 16");
  if (m.group_size <= 0 || m.cols % m.group_size != 0)
    return Status::Error("tensor " + t + ": group_size " + std::to_string(m.group_size) +
                         " does not divide " + std::to_string(m.cols) + " input features");
  if (!m.packed || !m.scales) return Status::Error("tensor " + t + ": missing packed data or scales");
  if (m.zero_point < 0 || m.zero_point > 16)
    return Status::Error("tensor " + t + ": zero_point out of range");
  m.packed_row_of.clear();
  if (!m.perm.empty()) {
    if (int64_t(m.perm.size()) != m.cols)
      return Status::Error("tensor " + t + ": perm has " + std::to_string(m.perm.size()) +
                           " entries, expected " + std::to_string(m.cols));
    m.packed_row_of.assign(size_t(m.cols), -1);
    for (int64_t k = 0; k < m.cols; ++k) {
      const int32_t c = m.perm[size_t(k)];
      if (c < 0 || c >= m.cols || m.packed_row_of[size_t(c)] != -1)
        return Status::Error("tensor " + t + ": perm is not a permutation of the input features");
      m.packed_row_of[size_t(c)] = int32_t(k);
    }
  }
  return Status::Ok();
}

void dequantize_int4_rows_unchecked(const Int4Matrix& m, int64_t r0, int64_t r1, int64_t c0,
                                    int64_t c1, float* out, int64_t ld) {
  const bool permuted = !m.packed_row_of.empty();
  for (int64_t r = r0; r < r1; ++r) {
    float* o = out + (r - r0) * ld;
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t k = permuted ? m.packed_row_of[size_t(c)] : c;
      const int64_t g = k / m.group_size;
      const int64_t gi = g * m.padded_rows + r;
      const int zero = m.zeros ? int(m.zeros[gi]) : m.zero_point;
      const int code = int4_code(m.packed, m.padded_rows, k, r);
      o[c - c0] = f16_to_f32(m.scales[gi]) * float(code - zero);
    }
  }
}

Status dequantize_int4_rows(const Int4Matrix& m, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                            float* out, int64_t ld) {
  if (r0 < 0 || r1 > m.rows || r0 > r1 || c0 < 0 || c1 > m.cols || c0 > c1 || ld < c1 - c0)
    return Status::Error("tensor " + m.name + ": dequantize range rows [" + std::to_string(r0) +
                         ", " + std::to_string(r1) + ") x cols [" + std::to_string(c0) + ", " +
                         std::to_string(c1) + ") outside [" + std::to_string(m.rows) + ", " +
                         std::to_string(m.cols) + "]");
  if (!m.perm.empty() && m.packed_row_of.size() != m.perm.size())
    return Status::Error("tensor " + m.name + ": finalize_int4_matrix was not called");
  dequantize_int4_rows_unchecked(m, r0, r1, c0, c1, out, ld);
  return Status::Ok();
}

}  // namespace qw::quant

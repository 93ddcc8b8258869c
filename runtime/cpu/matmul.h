// fp32-accumulating matrix products against weights kept in their artifact dtype.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"
#include "cpu/weight_matrix.h"

namespace qw::cpu {

// Converts n elements of row `row` of W, starting at column `col`, to fp32.
void convert_row(const WeightMatrix& w, int64_t row, int64_t col, int64_t n, float* out);

// y[m * ldy + j] = sum_k x[m * ldx + k] * W[row_begin + j, k] (+ bias[j])
// for m in [0, M), j in [0, row_count), k in [0, W.cols). Rows of W are spread over the
// pool; each is converted to fp32 once and reused for all M inputs.
void matmul(ThreadPool& pool, const float* x, int64_t M, int64_t ldx, const WeightMatrix& w,
            int64_t row_begin, int64_t row_count, const float* bias, float* y, int64_t ldy);

// Dot product with fp32 accumulation (SIMD where the CPU has AVX2+FMA).
float dot(const float* a, const float* b, int64_t n);
// y += a * x
void axpy(float a, const float* x, float* y, int64_t n);

}  // namespace qw::cpu

#include "cpu/matmul.h"

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <vector>

namespace qw::cpu {

namespace {

// ---- portable fallbacks -------------------------------------------------------------

void convert_f16_scalar(const uint16_t* src, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(src[i]);
}
void convert_bf16_scalar(const uint16_t* src, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(src[i]);
}
// Four partial sums break the dependency chain without needing -ffast-math.
float dot_scalar(const float* a, const float* b, int64_t n) {
  float s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) s[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) s[0] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}
void dot4_scalar(const float* x, const float* w, int64_t ldw, int64_t n, float* out) {
  for (int r = 0; r < 4; ++r) out[r] = dot_scalar(x, w + r * ldw, n);
}
void dot4x2_scalar(const float* x0, const float* x1, const float* w, int64_t ldw, int64_t n,
                   float* out0, float* out1) {
  dot4_scalar(x0, w, ldw, n, out0);
  dot4_scalar(x1, w, ldw, n, out1);
}
void axpy_scalar(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// ---- AVX2 + FMA + F16C --------------------------------------------------------------
#define QW_AVX2 __attribute__((target("avx2,fma,f16c")))

QW_AVX2 float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

QW_AVX2 void convert_f16_avx2(const uint16_t* src, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) out[i] = f16_to_f32(src[i]);
}

QW_AVX2 void convert_bf16_avx2(const uint16_t* src, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(w));
  }
  for (; i < n; ++i) out[i] = bf16_to_f32(src[i]);
}

QW_AVX2 float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Four rows of w (stride ldw) against one x: each x vector is loaded once for four FMAs.
QW_AVX2 void dot4_avx2(const float* x, const float* w, int64_t ldw, int64_t n, float* out) {
  const float* w0 = w;
  const float* w1 = w + ldw;
  const float* w2 = w + 2 * ldw;
  const float* w3 = w + 3 * ldw;
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i);
    a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w0 + i), a0);
    a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w1 + i), a1);
    a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w2 + i), a2);
    a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w3 + i), a3);
  }
  out[0] = hsum(a0);
  out[1] = hsum(a1);
  out[2] = hsum(a2);
  out[3] = hsum(a3);
  for (; i < n; ++i) {
    out[0] += x[i] * w0[i];
    out[1] += x[i] * w1[i];
    out[2] += x[i] * w2[i];
    out[3] += x[i] * w3[i];
  }
}

// Four rows of w against two x rows: eight accumulators, six loads per eight FMAs (the
// prefill path, where dot4 alone is bound by loads).
QW_AVX2 void dot4x2_avx2(const float* x0, const float* x1, const float* w, int64_t ldw, int64_t n,
                         float* out0, float* out1) {
  __m256 a[8];
  for (auto& v : a) v = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xa = _mm256_loadu_ps(x0 + i);
    const __m256 xb = _mm256_loadu_ps(x1 + i);
    for (int r = 0; r < 4; ++r) {
      const __m256 wv = _mm256_loadu_ps(w + r * ldw + i);
      a[r] = _mm256_fmadd_ps(xa, wv, a[r]);
      a[4 + r] = _mm256_fmadd_ps(xb, wv, a[4 + r]);
    }
  }
  for (int r = 0; r < 4; ++r) {
    out0[r] = hsum(a[r]);
    out1[r] = hsum(a[4 + r]);
  }
  for (; i < n; ++i)
    for (int r = 0; r < 4; ++r) {
      out0[r] += x0[i] * w[r * ldw + i];
      out1[r] += x1[i] * w[r * ldw + i];
    }
}

// Loads 8 weights of a 16-bit dtype as fp32.
QW_AVX2 inline __m256 load8_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
QW_AVX2 inline __m256 load8_bf16(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// Four 16-bit weight rows against one x, converting in registers: the decode path (one
// input row), where staging converted rows in a buffer would double the memory traffic.
template <bool kBf16>
QW_AVX2 inline __m256 load8(const uint16_t* p) {
  if constexpr (kBf16)
    return load8_bf16(p);
  else
    return load8_f16(p);
}

template <bool kBf16>
QW_AVX2 void dot4_half_avx2(const float* x, const uint16_t* w, int64_t ldw, int64_t n, float* out) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i);
    a0 = _mm256_fmadd_ps(xv, load8<kBf16>(w + i), a0);
    a1 = _mm256_fmadd_ps(xv, load8<kBf16>(w + ldw + i), a1);
    a2 = _mm256_fmadd_ps(xv, load8<kBf16>(w + 2 * ldw + i), a2);
    a3 = _mm256_fmadd_ps(xv, load8<kBf16>(w + 3 * ldw + i), a3);
  }
  out[0] = hsum(a0);
  out[1] = hsum(a1);
  out[2] = hsum(a2);
  out[3] = hsum(a3);
  for (; i < n; ++i)
    for (int r = 0; r < 4; ++r)
      out[r] += x[i] * (kBf16 ? bf16_to_f32(w[r * ldw + i]) : f16_to_f32(w[r * ldw + i]));
}

QW_AVX2 void axpy_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

#undef QW_AVX2

struct Kernels {
  void (*convert_f16)(const uint16_t*, int64_t, float*);
  void (*convert_bf16)(const uint16_t*, int64_t, float*);
  float (*dot)(const float*, const float*, int64_t);
  void (*dot4)(const float*, const float*, int64_t, int64_t, float*);
  void (*dot4x2)(const float*, const float*, const float*, int64_t, int64_t, float*, float*);
  void (*axpy)(float, const float*, float*, int64_t);
  // Fused convert + dot4 on 16-bit rows; null where there is no SIMD path.
  void (*dot4_f16)(const float*, const uint16_t*, int64_t, int64_t, float*);
  void (*dot4_bf16)(const float*, const uint16_t*, int64_t, int64_t, float*);
};

// CPUID leaf 1, ECX bit 29; clang 14 does not know "f16c" in __builtin_cpu_supports.
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

const Kernels& kernels() {
  static const Kernels k = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c())
      return Kernels{
          convert_f16_avx2,      convert_bf16_avx2,   dot_avx2, dot4_avx2, dot4x2_avx2, axpy_avx2,
          dot4_half_avx2<false>, dot4_half_avx2<true>};
    return Kernels{convert_f16_scalar, convert_bf16_scalar, dot_scalar, dot4_scalar,
                   dot4x2_scalar,      axpy_scalar,         nullptr,    nullptr};
  }();
  return k;
}

// Rows handed to one thread at a time: 4 matches the dot4 tile.
constexpr int64_t kRowTile = 4;
// Input features per pass in the multi-row path: 512 floats x (a few hundred rows) of
// activations fit in L2 alongside the converted weight tile.
constexpr int64_t kKBlock = 512;

}  // namespace

void convert_row(const WeightMatrix& w, int64_t row, int64_t col, int64_t n, float* out) {
  if (w.int4) {
    quant::dequantize_int4_rows_unchecked(*w.int4, row, row + 1, col, col + n, out, n);
    return;
  }
  const int64_t i = row * w.cols + col;
  switch (w.dtype) {
    case DType::F16:
      kernels().convert_f16(reinterpret_cast<const uint16_t*>(w.data) + i, n, out);
      return;
    case DType::BF16:
      kernels().convert_bf16(reinterpret_cast<const uint16_t*>(w.data) + i, n, out);
      return;
    default:
      std::copy_n(reinterpret_cast<const float*>(w.data) + i, n, out);
      return;
  }
}

float dot(const float* a, const float* b, int64_t n) {
  return kernels().dot(a, b, n);
}
void axpy(float a, const float* x, float* y, int64_t n) {
  kernels().axpy(a, x, y, n);
}

void matmul(ThreadPool& pool, const float* x, int64_t M, int64_t ldx, const WeightMatrix& w,
            int64_t row_begin, int64_t row_count, const float* bias, float* y, int64_t ldy) {
  const int64_t K = w.cols;
  const Kernels& kr = kernels();
  auto fused = w.int4                   ? nullptr
               : w.dtype == DType::F16  ? kr.dot4_f16
               : w.dtype == DType::BF16 ? kr.dot4_bf16
                                        : nullptr;
  if (M == 1 && fused) {
    pool.parallel_for(row_count, kRowTile, [&](int64_t jb, int64_t je) {
      const uint16_t* base = reinterpret_cast<const uint16_t*>(w.data);
      for (int64_t j = jb; j < je; j += kRowTile) {
        const int64_t nr = std::min(kRowTile, je - j);
        const int64_t row = row_begin + j;
        if (nr == kRowTile) {
          fused(x, base + row * K, K, K, y + j);
        } else {
          std::vector<float> buf(static_cast<size_t>(K));
          for (int64_t r = 0; r < nr; ++r) {
            convert_row(w, row + r, 0, K, buf.data());
            y[j + r] = kr.dot(x, buf.data(), K);
          }
        }
        if (bias)
          for (int64_t r = 0; r < nr; ++r) y[j + r] += bias[j + r];
      }
    });
    return;
  }
  // Several input rows (prefill): blocked over K so that the slice of x being used
  // (M x kKBlock floats) stays in cache while every weight tile of this thread's rows
  // passes over it; each weight element is converted to fp32 exactly once.
  pool.parallel_for(row_count, kRowTile, [&](int64_t jb, int64_t je) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = jb; j < je; ++j) y[m * ldy + j] = bias ? bias[j] : 0.0f;
    std::vector<float> buf(size_t(kRowTile * std::min(kKBlock, K)));
    float part[2 * kRowTile];
    for (int64_t k0 = 0; k0 < K; k0 += kKBlock) {
      const int64_t kn = std::min(kKBlock, K - k0);
      for (int64_t j = jb; j < je; j += kRowTile) {
        const int64_t nr = std::min(kRowTile, je - j);
        for (int64_t r = 0; r < nr; ++r)
          convert_row(w, row_begin + j + r, k0, kn, buf.data() + r * kn);
        int64_t m = 0;
        if (nr == kRowTile) {
          for (; m + 2 <= M; m += 2) {
            kr.dot4x2(x + m * ldx + k0, x + (m + 1) * ldx + k0, buf.data(), kn, kn, part,
                      part + kRowTile);
            for (int64_t r = 0; r < kRowTile; ++r) {
              y[m * ldy + j + r] += part[r];
              y[(m + 1) * ldy + j + r] += part[kRowTile + r];
            }
          }
          for (; m < M; ++m) {
            kr.dot4(x + m * ldx + k0, buf.data(), kn, kn, part);
            for (int64_t r = 0; r < kRowTile; ++r) y[m * ldy + j + r] += part[r];
          }
        } else {
          for (; m < M; ++m)
            for (int64_t r = 0; r < nr; ++r)
              y[m * ldy + j + r] += kr.dot(x + m * ldx + k0, buf.data() + r * kn, kn);
        }
      }
    }
  });
}

}  // namespace qw::cpu

// Random INT4 matrices in the artifact's packed layout (codes, scales, zeros, act-order perm)
// for the kernel emulation test (CPU) and the GPU kernel test.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "core/half.h"
#include "quant/dequantize.h"
#include "quant/int4_layout.h"

namespace qw::testing {

struct RandomInt4 {
  std::vector<uint8_t> codes;  // [K][N_pad], packed-row order
  std::vector<uint32_t> packed;
  std::vector<uint16_t> scales;  // fp16 [G][N_pad]
  std::vector<uint8_t> zeros;    // [G][N_pad] or empty (symmetric)
  quant::Int4Matrix m;           // views into the vectors above (do not copy a RandomInt4)
  std::vector<float> dense;      // dequantize_int4_rows: [N][K], logical input order

  RandomInt4() = default;
  RandomInt4(const RandomInt4&) = delete;
  RandomInt4& operator=(const RandomInt4&) = delete;
};

enum class Scales {
  kRandom,     // fp16 values spread over ~2 binades (realistic)
  kExact1024,  // m / 1024, m in [1, 2047]: with small-integer activations every sum is exact in
               // double
  kPow2,       // 2^-e, e in [0, 6]: scale * (an integer below 2^17) is exact in fp32 too
};

inline void make_random_int4(RandomInt4& r, int64_t n, int64_t k, int64_t group, bool with_zeros,
                             bool with_perm, Scales kind, std::mt19937_64& rng) {
  const int64_t np = quant::int4_padded_rows(n), g = k / group;
  r.codes.assign(size_t(k * np), 8);
  for (int64_t kk = 0; kk < k; ++kk)
    for (int64_t c = 0; c < n; ++c) r.codes[size_t(kk * np + c)] = uint8_t(rng() & 0xf);
  r.packed.assign(size_t(quant::int4_packed_words(k, np)), 0);
  quant::pack_int4(r.codes.data(), k, np, r.packed.data());
  r.scales.assign(size_t(g * np), 0);  // padding rows: scale 0
  std::uniform_real_distribution<float> ud(0.004f, 0.02f);
  for (int64_t gi = 0; gi < g; ++gi)
    for (int64_t c = 0; c < n; ++c)
      r.scales[size_t(gi * np + c)] =
          kind == Scales::kExact1024 ? f32_to_f16(float(1 + rng() % 2047) / 1024.0f)
          : kind == Scales::kPow2    ? f32_to_f16(std::ldexp(1.0f, -int(rng() % 7)))
                                     : f32_to_f16(ud(rng));
  r.zeros.clear();
  if (with_zeros) {
    r.zeros.assign(size_t(g * np), 8);
    for (auto& z : r.zeros) z = uint8_t(rng() % 17);  // v1 checkpoints can carry zero 16
  }
  r.m = quant::Int4Matrix();
  r.m.name = "random";
  r.m.rows = n, r.m.cols = k, r.m.padded_rows = np, r.m.group_size = group;
  r.m.packed = r.packed.data();
  r.m.scales = r.scales.data();
  r.m.zeros = with_zeros ? r.zeros.data() : nullptr;
  if (with_perm) {
    r.m.perm.resize(size_t(k));
    for (int64_t i = 0; i < k; ++i) r.m.perm[size_t(i)] = int32_t(i);
    std::shuffle(r.m.perm.begin(), r.m.perm.end(), rng);
  }
  Status s = quant::finalize_int4_matrix(r.m);
  if (!s.ok()) throw std::runtime_error(s.message());
  r.dense.assign(size_t(n * k), 0.f);
  s = quant::dequantize_int4_rows(r.m, 0, n, 0, k, r.dense.data(), k);
  if (!s.ok()) throw std::runtime_error(s.message());
}

// fp16 activations [batch][K] (logical input order): small integers (exact) or N(0, 1).
inline std::vector<uint16_t> random_activations(int64_t batch, int64_t k, bool small_ints,
                                                std::mt19937_64& rng) {
  std::vector<uint16_t> x(size_t(batch * k));
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& v : x) v = small_ints ? f32_to_f16(float(int(rng() % 17) - 8)) : f32_to_f16(nd(rng));
  return x;
}

// y[b][n] = sum_c dense[n][c] * x[b][c] in double, and sum |dense * x| (for tolerances).
inline void reference_gemm(const RandomInt4& r, const std::vector<uint16_t>& x, int64_t batch,
                           std::vector<double>& y, std::vector<double>& mag) {
  const int64_t n = r.m.rows, k = r.m.cols;
  y.assign(size_t(batch * n), 0.0);
  mag.assign(size_t(batch * n), 0.0);
  std::vector<double> xf(x.size());
  for (size_t i = 0; i < x.size(); ++i) xf[i] = f16_to_f32(x[i]);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t row = 0; row < n; ++row) {
      double s = 0, a = 0;
      const float* w = &r.dense[size_t(row * k)];
      const double* xb = &xf[size_t(b * k)];
      for (int64_t c = 0; c < k; ++c) {
        s += double(w[c]) * xb[c];
        a += std::abs(double(w[c]) * xb[c]);
      }
      y[size_t(b * n + row)] = s;
      mag[size_t(b * n + row)] = a;
    }
}

inline double silu_mul(double g, double u) {
  return g / (1.0 + std::exp(-g)) * u;
}

}  // namespace qw::testing

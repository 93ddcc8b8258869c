// The packed INT4 layout against an independent statement of what a kernel needs: lane L's
// 16-byte load of a 16x64 tile holds its mma.m16n8k16 B fragments, two per 32-bit half-pair.
#include <doctest/doctest.h>

#include <random>

#include "core/half.h"
#include "quant/dequantize.h"
#include "quant/int4_layout.h"

using namespace qw;
using namespace qw::quant;

namespace {

std::vector<uint8_t> random_codes(int64_t k, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> c(size_t(k * n));
  for (auto& v : c) v = uint8_t(rng() & 0xf);
  return c;
}

}  // namespace

TEST_CASE("pack_int4: every code is found where int4_code looks, and each word is used fully") {
  const int64_t K = 64, NP = 192;
  auto codes = random_codes(K, NP, 1);
  std::vector<uint32_t> packed(size_t(int4_packed_words(K, NP)));
  pack_int4(codes.data(), K, NP, packed.data());
  std::vector<int> hits(packed.size() * 8, 0);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < NP; ++n) {
      CHECK(int4_code(packed.data(), NP, k, n) == codes[size_t(k * NP + n)]);
      const Int4Slot s = int4_slot(k, n, NP);
      ++hits[size_t(s.word * 8 + s.shift / 4)];
    }
  for (int h : hits) CHECK(h == 1);  // a bijection: no nibble shared, none wasted
}

TEST_CASE("a lane's 16-byte load holds its mma.m16n8k16 B fragments, pairs 16 bits apart") {
  const int64_t K = 32, NP = 128;
  auto codes = random_codes(K, NP, 2);
  auto B = [&](int64_t k, int64_t n) { return uint32_t(codes[size_t(k * NP + n)]); };
  std::vector<uint32_t> packed(size_t(int4_packed_words(K, NP)));
  pack_int4(codes.data(), K, NP, packed.data());
  for (int64_t kt = 0; kt < K / 16; ++kt)
    for (int64_t nb = 0; nb < NP / 64; ++nb)
      for (int64_t lane = 0; lane < 32; ++lane) {
        // mma.m16n8k16 B (16x8, "col"): lane holds rows 2(lane%4)+{0,1} and +8, column lane/4.
        const int64_t r = 2 * (lane % 4), c = lane / 4;
        const uint32_t* v = &packed[size_t(kt * 2 * NP + nb * 128 + lane * 4)];
        for (int64_t j = 0; j < 4; ++j) {  // the 4 16-column sub-tiles of the 64-wide tile
          const uint32_t w = v[j];
          const int64_t k0 = kt * 16, n0 = nb * 64 + j * 16 + c;
          // (w >> 4i) & 0x000f000f: i = 0,1 -> n8 block 0; i = 2,3 -> n8 block 1.
          for (int64_t b = 0; b < 2; ++b)
            for (int64_t hi = 0; hi < 2; ++hi) {
              const uint32_t pair = (w >> (4 * (2 * b + hi))) & 0x000f000fu;
              const int64_t k = k0 + r + 8 * hi, n = n0 + 8 * b;
              CHECK((pair & 0xf) == B(k, n));
              CHECK((pair >> 16) == B(k + 1, n));
            }
        }
      }
}

TEST_CASE("dequantize_int4_rows: formula, zeros, permutation and sub-ranges") {
  const int64_t N = 70, K = 64, NP = int4_padded_rows(N), gs = 32, G = K / gs;
  CHECK(NP == 128);
  std::mt19937 rng(3);
  auto codes = random_codes(K, NP, 4);
  std::vector<uint32_t> packed(size_t(int4_packed_words(K, NP)));
  pack_int4(codes.data(), K, NP, packed.data());
  std::vector<uint16_t> scales(size_t(G * NP));
  std::vector<uint8_t> zeros(size_t(G * NP));
  for (auto& s : scales) s = f32_to_f16(float(rng() % 1000 + 1) * 1e-4f);
  for (auto& z : zeros) z = uint8_t(rng() % 17);
  std::vector<int32_t> perm(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) perm[size_t(k)] = int32_t((k * 37 + 5) % K);
  Int4Matrix m;
  m.name = "w";
  m.rows = N, m.cols = K, m.padded_rows = NP, m.group_size = gs;
  m.packed = packed.data(), m.scales = scales.data(), m.zeros = zeros.data(), m.perm = perm;
  REQUIRE(finalize_int4_matrix(m).ok());
  std::vector<float> out(size_t(N * K));
  REQUIRE(dequantize_int4_rows(m, 0, N, 0, K, out.data(), K).ok());
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) {
      const int64_t c = perm[size_t(k)], g = k / gs;
      const float want = f16_to_f32(scales[size_t(g * NP + n)]) *
                         float(int(codes[size_t(k * NP + n)]) - int(zeros[size_t(g * NP + n)]));
      CHECK(out[size_t(n * K + c)] == want);
    }
  std::vector<float> part(size_t(5 * 7));
  REQUIRE(dequantize_int4_rows(m, 60, 65, 10, 17, part.data(), 7).ok());
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t c = 0; c < 7; ++c) CHECK(part[size_t(r * 7 + c)] == out[size_t((60 + r) * K + 10 + c)]);
  CHECK(!dequantize_int4_rows(m, 0, N + 1, 0, K, out.data(), K).ok());
  m.zeros = nullptr;  // symmetric: zero point 8
  REQUIRE(dequantize_int4_rows(m, 0, 1, 0, K, out.data(), K).ok());
  CHECK(out[size_t(perm[0])] == f16_to_f32(scales[0]) * float(int(codes[0]) - 8));
  m.perm[1] = m.perm[0];
  CHECK(!finalize_int4_matrix(m).ok());
}

// The artifact's packed INT4 weight layout ("qw-int4-m16x64-v1", docs/int4_layout.md).
//
// A quantized linear y = W x with W [N out, K in] is stored as the code matrix B[k][n]
// (k in packed input order, n < N_pad = N rounded up to 64) cut into 16 (k) x 64 (n) tiles.
// Tile (kt, nb) is 128 consecutive uint32 words at kt * 2 * N_pad + nb * 128: lane L of a
// warp reads words [4L, 4L + 4) (one 16-byte load, a warp reads the tile in one 512-byte
// transaction) and gets exactly its B fragments of mma.m16n8k16 for the tile's eight n8
// column blocks, with the nibbles of each word interleaved so that (w >> 4i) & 0x000f000f
// yields two fragment elements at once (the magic-number fp16 dequantization of Marlin).
// The same addressing serves a GEMV: every byte of a tile is read once, coalesced.
#pragma once
#include <cstdint>

namespace qw::quant {

inline constexpr const char* kInt4Packing = "qw-int4-m16x64-v1";
inline constexpr int64_t kInt4TileK = 16;  // input features per tile (mma k)
inline constexpr int64_t kInt4TileN = 64;  // output features per tile
inline constexpr int kSymmetricZero = 8;   // zero point implied when no zeros tensor

inline int64_t int4_padded_rows(int64_t out_features) {
  return (out_features + kInt4TileN - 1) / kInt4TileN * kInt4TileN;
}
// uint32 words of a packed [k, n_pad] code matrix (k a multiple of 16).
inline int64_t int4_packed_words(int64_t k, int64_t n_pad) { return k / kInt4TileK * n_pad * 2; }

struct Int4Slot {
  int64_t word;  // index into the uint32 words
  int shift;     // bit position of the nibble in that word
};

// Where code B[k][n] lives. Derivation (see the doc): lane = 4 * (n % 8) + (k % 8) / 2 is the
// mma thread owning (k, n); its 8 values per 16x16 sub-tile are slot s = 4 * (n % 16 / 8) +
// 2 * (k % 16 / 8) + k % 2, stored at nibble p = 4 * (s % 2) + s / 2 so that the element pairs
// (s, s + 1) sit 16 bits apart.
inline Int4Slot int4_slot(int64_t k, int64_t n, int64_t n_pad) {
  const int64_t kt = k >> 4, kk = k & 15, nb = n >> 6, nn = n & 63;
  const int64_t j = nn >> 4, t = nn & 15, b = t >> 3, c8 = t & 7;
  const int64_t lane = c8 * 4 + ((kk & 7) >> 1);
  const int64_t s = b * 4 + (kk >> 3) * 2 + (kk & 1);
  const int p = int((s & 1) * 4 + (s >> 1));
  return {kt * 2 * n_pad + nb * 128 + lane * 4 + j, 4 * p};
}

inline uint8_t int4_code(const uint32_t* packed, int64_t n_pad, int64_t k, int64_t n) {
  const Int4Slot s = int4_slot(k, n, n_pad);
  return uint8_t((packed[s.word] >> s.shift) & 0xfu);
}

// Packs codes[k * n_pad + n] (k-major, values 0..15) into `out` (int4_packed_words words).
// k must be a multiple of 16 and n_pad of 64.
void pack_int4(const uint8_t* codes, int64_t k, int64_t n_pad, uint32_t* out);

}  // namespace qw::quant

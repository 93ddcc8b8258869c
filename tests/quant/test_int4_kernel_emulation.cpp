// CPU emulation of the INT4 decode GEMM (kernels_templates/gemv_int4.cuh). The kernel's own
// index math and per-lane steps (kernels_templates/int4_index.cuh: fragment coordinates, tile
// addressing, magic-number dequantization, group fold, split-K work split, partial-sum slots,
// SwiGLU dependencies) run here lane by lane; the one thing not taken from that header is the
// tensor-core instruction itself, emulated below straight from the PTX ISA's fragment tables
// for mma.m16n8k16 .f16 (so a wrong register layout in the kernel cannot cancel out). Blocks
// run one after another in a random order, which is a legal schedule of the kernel's
// last-arriver reductions. With small-integer activations and scales m / 1024, every product
// and sum is exact in double, so the emulation must equal the dequantize_int4_rows reference
// exactly: any misplaced element, group, scale, zero or permutation shows.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels_templates/int4_index.cuh"
#include "quant/int4_layout.h"
#include "tests/quant/int4_kernel_test_support.h"

using namespace qw;
using namespace qw::testing;

namespace {

// ---- mma.m16n8k16.row.col.f32.f16.f16.f32 per the PTX ISA (independent of int4_index.cuh) ----
// groupID = laneid >> 2, threadID_in_group = laneid % 4.
// A: a0,a1: (groupID, 2*tig + {0,1})       a2,a3: (groupID + 8, 2*tig + {0,1})
//    a4,a5: (groupID, 2*tig + 8 + {0,1})   a6,a7: (groupID + 8, 2*tig + 8 + {0,1})
//    register r holds a_{2r} (low 16 bits) and a_{2r+1} (high 16 bits).
// B: b0,b1: (row 2*tig + {0,1}, col groupID)   b2,b3: (row 2*tig + 8 + {0,1}, col groupID)
// C/D: c0,c1: (groupID, 2*tig + {0,1})   c2,c3: (groupID + 8, 2*tig + {0,1})
double h16(unsigned bits) {
  return f16_to_f32(uint16_t(bits & 0xffffu));
}

void hw_mma(double (*d)[4], const unsigned (*a)[4], const unsigned (*b)[2]) {
  double A[16][16] = {}, B[16][8] = {};
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane >> 2, t = lane & 3;
    const int arow[4] = {g, g + 8, g, g + 8}, acol[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
    for (int r = 0; r < 4; ++r) {
      A[arow[r]][acol[r]] = h16(a[lane][r]);
      A[arow[r]][acol[r] + 1] = h16(a[lane][r] >> 16);
    }
    const int brow[2] = {2 * t, 2 * t + 8};
    for (int r = 0; r < 2; ++r) {
      B[brow[r]][g] = h16(b[lane][r]);
      B[brow[r] + 1][g] = h16(b[lane][r] >> 16);
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane >> 2, t = lane & 3;
    const int crow[4] = {g, g, g + 8, g + 8}, ccol[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    for (int i = 0; i < 4; ++i) {
      double s = 0;
      for (int k = 0; k < 16; ++k) s += A[crow[i]][k] * B[k][ccol[i]];
      d[lane][i] += s;
    }
  }
}

struct Launch {
  int K = 0, group = 0, mode = 0, mh = 1, batch = 1, splits = 1;
};

// Emulates one launch. y: MODE 0/1 output [batch][N] (MODE 1 adds to it); yh: MODE 2 [batch][I].
template <int MH>
void emulate(const RandomInt4& r, const std::vector<uint16_t>& x, const Launch& L,
             std::vector<double>& y, std::vector<double>& yh, std::vector<int>& counters,
             std::mt19937_64& rng) {
  const int K = L.K, N = int(r.m.rows), n_pad = int(r.m.padded_rows), batch = L.batch;
  const int GS = L.group / 16, U = qw4_kernel_chunk_slabs(GS, MH), C = K / 16 / U;
  REQUIRE(K % L.group == 0);
  REQUIRE(GS % U == 0);
  const int n_tiles = n_pad >> 6, S = L.splits, elems = batch * 64;
  std::vector<double> ws(size_t(qw4_workspace_floats(n_tiles, S, batch, n_pad, L.mode)),
                         std::nan(""));
  REQUIRE(counters.size() >= size_t(qw4_counter_ints(n_pad, N, L.mode)));
  const unsigned short* xs = x.data();
  const int* perm = r.m.perm.empty() ? nullptr : r.m.perm.data();
  const unsigned short* scales = r.m.scales;
  const unsigned char* zeros = r.m.zeros;
  const int zero_point = r.m.zero_point;
  // Blocks finish in a random order: a legal schedule of the last-arriver reductions.
  std::vector<std::pair<int, int>> blocks;
  for (int t = 0; t < n_tiles; ++t)
    for (int s = 0; s < S; ++s) blocks.emplace_back(t, s);
  std::shuffle(blocks.begin(), blocks.end(), rng);

  auto load_words = [&](int slab, int tile, int lane) {
    // The kernel: ld_stream16(W + tile * 32 + lane + slab * (n_pad >> 1)), W as uint4.
    const long long w4 = (long long)lane + (long long)slab * (n_pad >> 1) + (long long)tile * 32;
    REQUIRE(4 * w4 == qw4_tile_word(slab, tile, lane, n_pad));
    Qw4Words wd;
    for (int i = 0; i < 4; ++i) wd.w[i] = r.packed[size_t(4 * w4 + i)];
    return wd;
  };

  for (auto [tile, split] : blocks) {
    const int c_lo = qw4_split_begin(C, S, split), c_hi = qw4_split_begin(C, S, split + 1);
    std::vector<double> red(size_t(QW4_WARPS * elems), 0.0);
    // Each warp's main loop (qw4_gemm), lane by lane.
    for (int w = 0; w < QW4_WARPS; ++w) {
      static double acc[32][8][4], gacc[32][8][4];
      for (int lane = 0; lane < 32; ++lane)
        for (int b = 0; b < 8; ++b)
          for (int i = 0; i < 4; ++i) acc[lane][b][i] = gacc[lane][b][i] = 0;
      for (int c = c_lo + w; c < c_hi; c += QW4_WARPS) {
        unsigned zc[32][2], sc[32][8];
        for (int lane = 0; lane < 32; ++lane)
          qw4_load_group(scales, zeros, zero_point, c * U / GS, tile, n_pad, lane, zc[lane],
                         sc[lane]);
        for (int v = 0; v < U; ++v) {
          unsigned a[32][4], b[32][8][2];
          for (int lane = 0; lane < 32; ++lane) {
            qw4_load_a<MH>(xs, perm, K, batch, c * U + v, lane, a[lane]);
            qw4_b_frags(load_words(c * U + v, tile, lane), zc[lane], b[lane]);
          }
          for (int k = 0; k < 8; ++k) {
            double d[32][4];
            unsigned bk[32][2];
            for (int lane = 0; lane < 32; ++lane) {
              for (int i = 0; i < 4; ++i) d[lane][i] = MH == 2 || i < 2 ? gacc[lane][k][i] : 0.0;
              bk[lane][0] = b[lane][k][0], bk[lane][1] = b[lane][k][1];
            }
            hw_mma(d, a, bk);
            for (int lane = 0; lane < 32; ++lane)
              for (int i = 0; i < 2 * MH; ++i) gacc[lane][k][i] = d[lane][i];  // m8: c2/c3 dropped
          }
        }
        for (int lane = 0; lane < 32; ++lane) qw4_fold<MH, double>(acc[lane], gacc[lane], sc[lane]);
      }
      for (int lane = 0; lane < 32; ++lane)
        for (int j = 0; j < 4; ++j)
          for (int h = 0; h < 2; ++h)
            for (int i = 0; i < 2 * MH; ++i) {
              const int m = qw4_c_row(i, lane);
              if (m < batch)
                red[size_t(w * elems + m * 64 + qw4_tile_col(j, h, qw4_c_n(i, lane)))] =
                    acc[lane][qw4_blk(j, h)][i];
            }
    }
    std::vector<double> v(size_t(elems), 0.0);
    for (int e = 0; e < elems; ++e)
      for (int w = 0; w < QW4_WARPS; ++w) v[size_t(e)] += red[size_t(w * elems + e)];
    if (S > 1) {
      for (int e = 0; e < elems; ++e)
        ws[size_t(qw4_partial_index(tile, S, split, 0, 0, batch) + e)] = v[size_t(e)];
      if (counters[size_t(tile)]++ != S - 1) continue;
      for (int e = 0; e < elems; ++e) {
        v[size_t(e)] = 0;
        for (int s = 0; s < S; ++s) {
          const double p = ws[size_t(qw4_partial_index(tile, S, s, e >> 6, e & 63, batch))];
          REQUIRE(!std::isnan(p));  // every split published its sum before
          v[size_t(e)] += p;
        }
      }
      counters[size_t(tile)] = 0;
    }
    if (L.mode != 2) {
      for (int e = 0; e < elems; ++e) {
        const int m = e >> 6, n = tile * 64 + (e & 63);
        if (n >= N) continue;
        double& p = y[size_t(m) * N + size_t(n)];
        p = L.mode == 1 ? p + v[size_t(e)] : v[size_t(e)];
      }
      continue;
    }
    const int inter = N >> 1;
    double* fin = ws.data() + qw4_fin_offset(n_tiles, S, batch);
    for (int e = 0; e < elems; ++e)
      fin[size_t(e >> 6) * n_pad + size_t(tile * 64 + (e & 63))] = v[size_t(e)];
    int outs[3];
    const int no = qw4_swiglu_dependents(tile, inter, outs);
    for (int q = 0; q < no; ++q) {
      if (counters[size_t(n_tiles + outs[q])]++ != qw4_swiglu_deps(outs[q], inter) - 1) continue;
      const int o = outs[q];
      for (int e = 0; e < elems; ++e) {
        const int m = e >> 6, n = o * 64 + (e & 63);
        if (n < inter)
          yh[size_t(m) * inter + size_t(n)] = silu_mul(fin[size_t(m) * n_pad + size_t(n)],
                                                       fin[size_t(m) * n_pad + size_t(inter + n)]);
      }
      counters[size_t(n_tiles + o)] = 0;
    }
  }
}

struct Case {
  int64_t n, k, group;
  bool zeros, perm;
  int mode;
};

void run_case(const Case& c, int mh, int batch, int splits, std::mt19937_64& rng) {
  CAPTURE(c.n);
  CAPTURE(c.k);
  CAPTURE(c.group);
  CAPTURE(c.zeros);
  CAPTURE(c.perm);
  CAPTURE(c.mode);
  CAPTURE(mh);
  CAPTURE(batch);
  CAPTURE(splits);
  RandomInt4 r;
  make_random_int4(r, c.n, c.k, c.group, c.zeros, c.perm, Scales::kExact1024, rng);
  auto x = random_activations(batch, c.k, /*small_ints=*/true, rng);
  std::vector<double> ref, mag;
  reference_gemm(r, x, batch, ref, mag);
  Launch L;
  L.K = int(c.k), L.group = int(c.group), L.mode = c.mode, L.mh = mh, L.batch = batch,
  L.splits = splits;
  const int N = int(c.n), inter = N / 2;
  std::vector<double> y(size_t(batch) * N, std::nan("")), yh(size_t(batch) * inter, std::nan(""));
  std::vector<double> y0(y.size());
  if (c.mode == 1) {
    for (auto& v : y0) v = double(int(rng() % 200) - 100);
    y = y0;
  }
  std::vector<int> counters(size_t(qw4_counter_ints(int(r.m.padded_rows), N, c.mode)), 0);
  if (mh == 1)
    emulate<1>(r, x, L, y, yh, counters, rng);
  else
    emulate<2>(r, x, L, y, yh, counters, rng);
  for (int v : counters) CHECK(v == 0);  // every launch leaves its counters zero
  size_t bad = 0;
  if (c.mode == 2) {
    for (int b = 0; b < batch; ++b)
      for (int n = 0; n < inter; ++n) {
        const double want = silu_mul(ref[size_t(b) * N + n], ref[size_t(b) * N + inter + n]);
        bad += !(yh[size_t(b) * inter + n] == want);
      }
  } else {
    for (size_t i = 0; i < y.size(); ++i) bad += !(y[i] == ref[i] + (c.mode == 1 ? y0[i] : 0.0));
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("mma fragment helpers match the PTX ISA tables") {
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane >> 2, t = lane & 3;
    for (int r = 0; r < 4; ++r)
      for (int half = 0; half < 2; ++half) {
        const int i = 2 * r + half;  // element a_i
        CHECK(qw4_a_row(r, lane) == ((i < 2 || (i >= 4 && i < 6)) ? g : g + 8));
        CHECK(qw4_a_k(r, half, lane) == (i < 4 ? 2 * t + (i & 1) : 2 * t + (i & 1) + 8));
      }
    for (int r = 0; r < 2; ++r)
      for (int half = 0; half < 2; ++half) {
        const int i = 2 * r + half;
        CHECK(qw4_b_k(r, half, lane) == (i < 2 ? 2 * t + (i & 1) : 2 * t + (i & 1) + 8));
      }
    CHECK(qw4_b_n(lane) == g);
    for (int i = 0; i < 4; ++i) {
      CHECK(qw4_c_row(i, lane) == (i < 2 ? g : g + 8));
      CHECK(qw4_c_n(i, lane) == 2 * t + (i & 1));
    }
  }
}

TEST_CASE("tile addressing and nibble shifts agree with the packer (int4_slot)") {
  const int64_t K = 48, NP = 192;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < NP; ++n) {
      const quant::Int4Slot s = quant::int4_slot(k, n, NP);
      // Which lane/word/nibble the kernel reads for (k, n):
      int found = 0;
      for (int lane = 0; lane < 32; ++lane)
        for (int j = 0; j < 4; ++j)
          for (int h = 0; h < 2; ++h)
            for (int r = 0; r < 2; ++r)
              for (int half = 0; half < 2; ++half) {
                const int64_t kk = (k / 16) * 16 + qw4_b_k(r, half, lane);
                const int64_t nn = (n / 64) * 64 + qw4_tile_col(j, h, qw4_b_n(lane));
                if (kk != k || nn != n) continue;
                ++found;
                CHECK(qw4_tile_word(k / 16, n / 64, lane, NP) + j == s.word);
                CHECK(qw4_b_shift(h, r) + 16 * half == s.shift);
              }
      CHECK(found == 1);
    }
}

TEST_CASE("magic-number dequantization is exact for every code and zero point") {
  for (unsigned z = 0; z <= 255; ++z)
    for (unsigned q0 = 0; q0 < 16; ++q0)
      for (unsigned q1 = 0; q1 < 16; q1 += 5) {
        const unsigned w = q0 | (q1 << 16);
        const unsigned zq[2] = {z * 0x01010101u, z * 0x01010101u};
        const unsigned d = qw4_hsub2(qw4_magic_pair(w, 0), qw4_zero_pair_of(zq, 3));
        CHECK(f16_to_f32(uint16_t(d & 0xffff)) == float(int(q0) - int(z)));
        CHECK(f16_to_f32(uint16_t(d >> 16)) == float(int(q1) - int(z)));
        // The kernel's pair of a nibble shift 4 above (qw4_b_frags' hi path).
        const unsigned e =
            qw4_hfma2_16th(qw4_magic_hi(w << 4), qw4_neg_zero_pair_hi(qw4_zero_pair_of(zq, 3)));
        CHECK(f16_to_f32(uint16_t(e & 0xffff)) == float(int(q0) - int(z)));
        CHECK(f16_to_f32(uint16_t(e >> 16)) == float(int(q1) - int(z)));
        CHECK(qw4_magic_lo(w) == qw4_magic_pair(w, 0));
      }
}

TEST_CASE("split-K: every chunk of a tile in exactly one split, one warp") {
  for (int chunks : {1, 7, 56, 296})
    for (int splits : {1, 3, 8, 40, 64}) {
      CHECK(qw4_split_begin(chunks, splits, 0) == 0);
      CHECK(qw4_split_begin(chunks, splits, splits) == chunks);
      std::vector<int> seen(size_t(chunks), 0);
      for (int s = 0; s < splits; ++s) {
        const int lo = qw4_split_begin(chunks, splits, s),
                  hi = qw4_split_begin(chunks, splits, s + 1);
        CHECK(lo <= hi);
        CHECK(hi - lo <= (chunks + splits - 1) / splits);  // balanced
        for (int w = 0; w < QW4_WARPS; ++w)
          for (int c = lo + w; c < hi; c += QW4_WARPS) ++seen[size_t(c)];
      }
      for (int n : seen) CHECK(n == 1);
    }
  // Partial sums of distinct (tile, split, row, column) never share a slot.
  CHECK(qw4_partial_index(0, 3, 1, 0, 0, 2) == 2 * 64);
  CHECK(qw4_partial_index(1, 3, 0, 0, 0, 2) == 3 * 2 * 64);
  CHECK(qw4_partial_index(1, 3, 2, 1, 63, 2) + 1 == qw4_fin_offset(2, 3, 2));
}

TEST_CASE("SwiGLU output tiles: dependency counts match the tiles that feed them") {
  for (int inter = 1; inter <= 400; ++inter) {
    const int n_tiles = (2 * inter + 63) / 64, outs = qw4_swiglu_out_tiles(inter);
    std::vector<int> fed(size_t(outs), 0);
    for (int p = 0; p < n_tiles; ++p) {
      int o[3];
      const int no = qw4_swiglu_dependents(p, inter, o);
      REQUIRE(no <= 3);
      for (int q = 0; q < no; ++q) {
        REQUIRE(o[q] >= 0);
        REQUIRE(o[q] < outs);
        for (int q2 = 0; q2 < q; ++q2) CHECK(o[q2] != o[q]);
        ++fed[size_t(o[q])];
      }
    }
    for (int o = 0; o < outs; ++o) {
      // Tiles holding gate columns [64o, end) and up columns [I + 64o, I + end).
      const int end = std::min(64 * o + 64, inter);
      std::vector<int> need;
      for (int c = 64 * o; c < end; ++c) {
        need.push_back(c / 64);
        need.push_back((inter + c) / 64);
      }
      std::sort(need.begin(), need.end());
      need.erase(std::unique(need.begin(), need.end()), need.end());
      CHECK(fed[size_t(o)] == int(need.size()));
      CHECK(qw4_swiglu_deps(o, inter) == int(need.size()));
    }
  }
}

TEST_CASE("launch plan and workspace sizes") {
  CHECK(qw4_kernel_chunk_slabs(8, 1) == 4);  // g128, m8
  CHECK(qw4_kernel_chunk_slabs(8, 2) == 2);  // g128, m16
  CHECK(qw4_kernel_chunk_slabs(2, 1) == 2);  // g32
  CHECK(qw4_kernel_chunk_slabs(7, 1) == 1);  // one group of K = 112
  // 7B shapes (g128, m8: 56 chunks per tile for K = 3584, 296 for 18944) on an H100 (132 SMs,
  // 264 resident blocks): qkv 72 tiles -> 3 splits (216 blocks, one wave), o_proj 56 -> 4,
  // gate_up 592 tiles -> 1 (three waves; more splits only add partial sums), down_proj 56
  // tiles -> 4 (224 blocks).
  CHECK(qw4_plan_splits(72, 56, 264) == 3);
  CHECK(qw4_plan_splits(56, 56, 264) == 4);
  CHECK(qw4_plan_splits(592, 56, 264) == 1);
  CHECK(qw4_plan_splits(56, 296, 264) == 4);
  CHECK(qw4_plan_splits(1, 1, 264) == 1);  // never more splits than chunks
  CHECK(qw4_plan_splits(1, 8, 264) == 1);  // one block: its 8 warps take a chunk each
  CHECK(qw4_plan_splits(2, 64, 264) == 8);
  CHECK(qw4_workspace_floats(2, 3, 4, 128, 0) == 2LL * 3 * 4 * 64);
  CHECK(qw4_workspace_floats(2, 3, 4, 128, 2) == 2LL * 3 * 4 * 64 + 4 * 128);
  CHECK(qw4_counter_ints(128, 100, 1) == 2);
  CHECK(qw4_counter_ints(128, 100, 2) == 2 + 1);
}

TEST_CASE("emulated INT4 GEMM equals the CPU reference exactly (all modes, 1..16 rows)") {
  std::mt19937_64 rng(20261124);
  const Case cases[] = {
      // n, k, group, zeros, perm, mode
      {200, 256, 32, false, false, 0},  {200, 256, 64, true, false, 0},
      {200, 256, 128, false, true, 0},  {200, 256, 256, true, true, 0},
      {130, 384, 128, true, false, 1},  {130, 384, 384, false, false, 1},
      {64, 144, 144, true, true, 1},    {70, 128, 32, true, true, 1},
      {200, 256, 64, false, false, 2},  {192, 128, 128, true, true, 2},
      {128, 256, 32, false, true, 2},   {38, 160, 32, true, false, 2},
      {300, 112, 112, false, false, 0},
  };
  for (const Case& c : cases)
    for (int mh : {1, 2})
      for (int splits : {1, 3, 40}) {
        const int batches_m8[] = {1, 3, 8}, batches_m16[] = {1, 9, 16};
        for (int batch : (mh == 1 ? batches_m8 : batches_m16)) run_case(c, mh, batch, splits, rng);
      }
}

// CPU emulation of the INT4 decode GEMM (kernels_templates/gemv_int4.cuh). The kernel's own
// index math and per-lane steps (kernels_templates/int4_index.cuh: fragment coordinates, tile
// addressing, magic-number dequantization, group fold, stream-K work split, partial-sum slots,
// SwiGLU dependencies) run here lane by lane; the one thing not taken from that header is the
// tensor-core instruction itself, emulated below straight from the PTX ISA's fragment tables
// for mma.m16n8k16 .f16 (so a wrong register layout in the kernel cannot cancel out). Warps
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
  int K = 0, group = 0, mode = 0, mh = 1, batch = 1, grid = 1;
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
  const int n_tiles = n_pad >> 6;
  const long long units = (long long)n_tiles * C;
  const int workers = qw4_workers(units, (long long)L.grid * QW4_WARPS);
  std::vector<double> ws(size_t(qw4_workspace_floats(L.grid, batch, n_pad, L.mode)), std::nan(""));
  REQUIRE(counters.size() >= size_t(qw4_counter_ints(n_pad, N, L.mode)));
  const unsigned short* xs = x.data();
  const int* perm = r.m.perm.empty() ? nullptr : r.m.perm.data();
  const unsigned short* scales = r.m.scales;
  const unsigned char* zeros = r.m.zeros;
  const int zero_point = r.m.zero_point;
  std::vector<int> order(size_t(L.grid * QW4_WARPS));
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  std::shuffle(order.begin(), order.end(), rng);

  auto load_words = [&](int slab, int tile, int lane) {
    // The kernel: ld_stream16(W + lane + slab * (n_pad >> 1) + tile * 32), W as uint4.
    const long long w4 = (long long)lane + (long long)slab * (n_pad >> 1) + (long long)tile * 32;
    REQUIRE(4 * w4 == qw4_tile_word(slab, tile, lane, n_pad));
    Qw4Words wd;
    for (int i = 0; i < 4; ++i) wd.w[i] = r.packed[size_t(4 * w4 + i)];
    return wd;
  };

  // MODE epilogue (qw4_finish_tile), lane by lane.
  auto finish_tile = [&](double(*acc)[8][4], int tile) {
    if (L.mode != 2) {
      for (int lane = 0; lane < 32; ++lane)
        for (int j = 0; j < 4; ++j)
          for (int h = 0; h < 2; ++h)
            for (int i = 0; i < 2 * MH; ++i) {
              const int m = qw4_c_row(i, lane),
                        n = tile * 64 + qw4_tile_col(j, h, qw4_c_n(i, lane));
              if (m < batch && n < N) {
                double& p = y[size_t(m) * N + size_t(n)];
                p = L.mode == 1 ? p + acc[lane][qw4_blk(j, h)][i] : acc[lane][qw4_blk(j, h)][i];
              }
            }
      return;
    }
    const int inter = N >> 1;
    double* fin = ws.data() + qw4_workspace_floats(L.grid, batch, n_pad, 0);
    for (int lane = 0; lane < 32; ++lane)
      for (int j = 0; j < 4; ++j)
        for (int h = 0; h < 2; ++h)
          for (int i = 0; i < 2 * MH; ++i) {
            const int m = qw4_c_row(i, lane), n = tile * 64 + qw4_tile_col(j, h, qw4_c_n(i, lane));
            if (m < batch) fin[size_t(m) * n_pad + size_t(n)] = acc[lane][qw4_blk(j, h)][i];
          }
    int outs[3];
    const int no = qw4_swiglu_dependents(tile, inter, outs);
    for (int q = 0; q < no; ++q) {
      if (counters[size_t(n_tiles + outs[q])]++ != qw4_swiglu_deps(outs[q], inter) - 1) continue;
      const int o = outs[q];
      for (int e = 0; e < batch * 64; ++e) {
        const int m = e >> 6, n = o * 64 + (e & 63);
        if (n < inter)
          yh[size_t(m) * inter + size_t(n)] = silu_mul(fin[size_t(m) * n_pad + size_t(n)],
                                                       fin[size_t(m) * n_pad + size_t(inter + n)]);
      }
      counters[size_t(n_tiles + o)] = 0;
    }
  };

  // qw4_tile_end, lane by lane.
  auto tile_end = [&](double(*acc)[8][4], int tile, int w) {
    const int wlo = qw4_worker_of((long long)tile * C, units, workers);
    const int whi = qw4_worker_of((long long)tile * C + C - 1, units, workers);
    if (wlo != whi) {
      const int slot = qw4_slot(w, tile, units, workers, C);
      for (int lane = 0; lane < 32; ++lane)
        for (int j = 0; j < 4; ++j)
          for (int h = 0; h < 2; ++h)
            for (int i = 0; i < 2 * MH; ++i) {
              const int m = qw4_c_row(i, lane);
              if (m < batch)
                ws[size_t(qw4_partial_index(w, slot, m, qw4_tile_col(j, h, qw4_c_n(i, lane)),
                                            batch))] = acc[lane][qw4_blk(j, h)][i];
            }
      if (counters[size_t(tile)]++ != whi - wlo) return;
      for (int lane = 0; lane < 32; ++lane)
        for (int b = 0; b < 8; ++b)
          for (int i = 0; i < 4; ++i) acc[lane][b][i] = 0;
      for (int c = wlo; c <= whi; ++c) {
        const int cs = qw4_slot(c, tile, units, workers, C);
        for (int lane = 0; lane < 32; ++lane)
          for (int j = 0; j < 4; ++j)
            for (int h = 0; h < 2; ++h)
              for (int i = 0; i < 2 * MH; ++i) {
                const int m = qw4_c_row(i, lane);
                if (m < batch) {
                  const double v = ws[size_t(
                      qw4_partial_index(c, cs, m, qw4_tile_col(j, h, qw4_c_n(i, lane)), batch))];
                  REQUIRE(!std::isnan(v));  // every contributor wrote its slot before
                  acc[lane][qw4_blk(j, h)][i] += v;
                }
              }
      }
      counters[size_t(tile)] = 0;
    }
    finish_tile(acc, tile);
  };

  // Each warp's main loop (qw4_gemm), lane by lane.
  for (int w : order) {
    if (w >= workers) continue;
    long long u = qw4_begin(units, workers, w);
    const long long u_end = qw4_begin(units, workers, w + 1);
    REQUIRE(u < u_end);
    static double acc[32][8][4], gacc[32][8][4];
    for (int lane = 0; lane < 32; ++lane)
      for (int b = 0; b < 8; ++b)
        for (int i = 0; i < 4; ++i) acc[lane][b][i] = gacc[lane][b][i] = 0;
    std::vector<Qw4Words> wc(size_t(32 * U)), wn(size_t(32 * U));
    unsigned zc[32][2], sc[32][8], zn[32][2], sn[32][8];
    Qw4Chunk ch = qw4_chunk(u, C, U, GS);
    for (int lane = 0; lane < 32; ++lane) {
      for (int v = 0; v < U; ++v) wc[size_t(lane * U + v)] = load_words(ch.slab + v, ch.tile, lane);
      qw4_load_group(scales, zeros, zero_point, ch.group, ch.tile, n_pad, lane, zc[lane], sc[lane]);
    }
    for (;;) {
      const bool more = u + 1 < u_end;
      const Qw4Chunk nx = more ? qw4_chunk(u + 1, C, U, GS) : ch;
      const bool same_tile = more && nx.tile == ch.tile;
      const bool same_group = same_tile && nx.group == ch.group;
      if (more)
        for (int lane = 0; lane < 32; ++lane) {
          for (int v = 0; v < U; ++v)
            wn[size_t(lane * U + v)] = load_words(nx.slab + v, nx.tile, lane);
          if (!same_group)
            qw4_load_group(scales, zeros, zero_point, nx.group, nx.tile, n_pad, lane, zn[lane],
                           sn[lane]);
        }
      for (int v = 0; v < U; ++v) {
        unsigned a[32][4], b[32][8][2];
        for (int lane = 0; lane < 32; ++lane) {
          qw4_load_a<MH>(xs, perm, K, batch, ch.slab + v, lane, a[lane]);
          qw4_b_frags(wc[size_t(lane * U + v)], zc[lane], b[lane]);
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
            for (int i = 0; i < 2 * MH; ++i) gacc[lane][k][i] = d[lane][i];  // m8: c2/c3 discarded
        }
      }
      if (!same_group)
        for (int lane = 0; lane < 32; ++lane) qw4_fold<MH, double>(acc[lane], gacc[lane], sc[lane]);
      if (!same_tile) {
        tile_end(acc, ch.tile, w);
        for (int lane = 0; lane < 32; ++lane)
          for (int b = 0; b < 8; ++b)
            for (int i = 0; i < 4; ++i) acc[lane][b][i] = 0;
      }
      if (!more) break;
      ++u;
      ch = nx;
      wc = wn;
      if (!same_group)
        for (int lane = 0; lane < 32; ++lane) {
          for (int b = 0; b < 2; ++b) zc[lane][b] = zn[lane][b];
          for (int b = 0; b < 8; ++b) sc[lane][b] = sn[lane][b];
        }
    }
  }
}

struct Case {
  int64_t n, k, group;
  bool zeros, perm;
  int mode;
};

void run_case(const Case& c, int mh, int batch, int grid, std::mt19937_64& rng) {
  CAPTURE(c.n);
  CAPTURE(c.k);
  CAPTURE(c.group);
  CAPTURE(c.zeros);
  CAPTURE(c.perm);
  CAPTURE(c.mode);
  CAPTURE(mh);
  CAPTURE(batch);
  CAPTURE(grid);
  RandomInt4 r;
  make_random_int4(r, c.n, c.k, c.group, c.zeros, c.perm, Scales::kExact1024, rng);
  auto x = random_activations(batch, c.k, /*small_ints=*/true, rng);
  std::vector<double> ref, mag;
  reference_gemm(r, x, batch, ref, mag);
  Launch L;
  L.K = int(c.k), L.group = int(c.group), L.mode = c.mode, L.mh = mh, L.batch = batch,
  L.grid = grid;
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
      }
}

TEST_CASE("stream-K split: ranges, owners, slots") {
  for (long long units : {1LL, 7LL, 64LL, 1000LL, 3136LL})
    for (long long warps : {1LL, 3LL, 8LL, 16LL, 64LL, 2112LL}) {
      const int workers = qw4_workers(units, warps);
      CHECK(workers <= warps);
      CHECK(qw4_begin(units, workers, 0) == 0);
      CHECK(qw4_begin(units, workers, workers) == units);
      for (int w = 0; w < workers; ++w)
        CHECK(qw4_begin(units, workers, w) < qw4_begin(units, workers, w + 1));
      for (long long u = 0; u < units; ++u) {
        const int w = qw4_worker_of(u, units, workers);
        REQUIRE(w >= 0);
        REQUIRE(w < workers);
        CHECK(qw4_begin(units, workers, w) <= u);
        CHECK(u < qw4_begin(units, workers, w + 1));
      }
      for (int C : {1, 2, 7, 56}) {
        if (units % C) continue;
        // No worker uses one slot for two tiles.
        for (int w = 0; w < workers; ++w) {
          const long long b = qw4_begin(units, workers, w), e = qw4_begin(units, workers, w + 1);
          const int t0 = int(b / C), t1 = int((e - 1) / C);
          CHECK(qw4_slot(w, t0, units, workers, C) == 0);
          if (t1 != t0) CHECK(qw4_slot(w, t1, units, workers, C) == 1);
        }
      }
    }
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
  // 7B shapes on an H100 (132 SMs): one wave of resident blocks (one per SM).
  CHECK(qw4_plan_grid(72, 3584, 128, 1, 132, 1) == 132);
  CHECK(qw4_kernel_chunk_slabs(8, 1) == 8);  // g128, m8
  CHECK(qw4_kernel_chunk_slabs(8, 2) == 4);  // g128, m16
  CHECK(qw4_kernel_chunk_slabs(2, 1) == 2);  // g32
  CHECK(qw4_kernel_chunk_slabs(7, 1) == 1);  // one group of K = 112
  CHECK(qw4_plan_grid(56, 18944, 128, 16, 132, 1) == 132);
  CHECK(qw4_plan_grid(1, 128, 128, 1, 132, 1) == 1);  // tiny: never more warps than chunks
  CHECK(qw4_workspace_floats(2, 3, 128, 0) == 2LL * 16 * 3 * 64);
  CHECK(qw4_workspace_floats(2, 3, 128, 2) == 2LL * 16 * 3 * 64 + 3 * 128);
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
      for (int grid : {1, 3, 40}) {
        const int batches_m8[] = {1, 3, 8}, batches_m16[] = {1, 9, 16};
        for (int batch : (mh == 1 ? batches_m8 : batches_m16)) run_case(c, mh, batch, grid, rng);
      }
}

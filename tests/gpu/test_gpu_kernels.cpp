// Kernel tests against float64 CPU references on fresh random inputs (the seed is printed),
// with poisoned outputs. Modules are compiled for the device with NVRTC from the embedded
// templates (the run-time fallback path), for f16 and bf16.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "core/half.h"
#include "cpu/rope.h"
#include "gpu/cuda_util.h"
#include "gpu/gemv_plan.h"
#include "gpu/gpu_test_support.h"
#include "gpu/kernel_module.h"
#include "kernels_templates/gemv_tc_plan.cuh"

using namespace qw;
using namespace qw::gpu;

namespace {

using qw::testing::download;
using qw::testing::have_gpu;
using qw::testing::poisoned;
using qw::testing::upload;
uint64_t seed() {
  return qw::testing::gpu_test_seed();
}

struct Model {
  ModelConfig cfg;
  TpPlan plan;
  DType dt;
};

Model test_model(DType dt) {
  Model m;
  m.cfg.hidden_size = 896;
  m.cfg.intermediate_size = 1216;
  m.cfg.num_attention_heads = 14;
  m.cfg.num_key_value_heads = 2;
  m.cfg.head_dim = 128;
  m.cfg.vocab_size = 1000;
  m.cfg.num_hidden_layers = 1;
  m.cfg.rms_norm_eps = 1e-6;
  m.cfg.rope_theta = 1000000.0;
  m.cfg.max_position_embeddings = 32768;
  m.plan.tp = 1;
  m.plan.num_heads = 14;
  m.plan.num_kv_heads = 2;
  m.plan.q_heads_per_rank = 14;
  m.plan.kv_heads_per_rank = 2;
  m.plan.intermediate_per_rank = 1216;
  m.plan.vocab_per_rank = 1000;
  m.dt = dt;
  return m;
}

// inter_k_tail: an intermediate size that is not a multiple of 32 (down_proj's K then
// ends in a partial 32-wide unit, as 72B's 29568 / tp 8 = 3696 does).
Model test_model_k_tail(DType dt) {
  Model m = test_model(dt);
  m.cfg.intermediate_size = m.plan.intermediate_per_rank = 1240;
  return m;
}

KernelModule& module_for(DType dt, bool inter_k_tail = false) {
  static std::map<int, std::unique_ptr<KernelModule>> mods;
  auto& p = mods[int(dt) * 2 + int(inter_k_tail)];
  if (!p) {
    Model m = inter_k_tail ? test_model_k_tail(dt) : test_model(dt);
    auto mod = KernelModule::compile_for_device(m.cfg, m.plan, dt, 0);
    REQUIRE_MESSAGE(mod.ok(), mod.status().message());
    std::printf("module (%s): %s %s in %.2f s\n", std::string(dtype_name(dt)).c_str(),
                kernel_source_name(mod->info().source), mod->info().arch.c_str(),
                mod->info().seconds);
    p = std::make_unique<KernelModule>(std::move(*mod));
  }
  return *p;
}

uint16_t to16(DType dt, float f) {
  return dt == DType::BF16 ? f32_to_bf16(f) : f32_to_f16(f);
}
float from16(DType dt, uint16_t h) {
  return dt == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// Random 16-bit values (their float value is returned in `exact`).
std::vector<uint16_t> rand16(DType dt, size_t n, std::mt19937_64& rng, float scale,
                             std::vector<float>* exact) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<uint16_t> v(n);
  if (exact) exact->resize(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = to16(dt, d(rng));
    if (exact) (*exact)[i] = from16(dt, v[i]);
  }
  return v;
}
std::vector<float> randf(size_t n, std::mt19937_64& rng, float scale) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// ||a - ref|| / ||ref||; NaN anywhere fails.
double rel_err(const std::vector<double>& ref, const std::vector<double>& got) {
  REQUIRE(ref.size() == got.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// The float64 reference of a decode GEMM (mode 0: W x, 1: y0 + W x, 2: SwiGLU of rows n and
// n + N) for the first B rows, next to what the kernel wrote (y fp32, or yh 16-bit for mode 2).
void gemv_reference(DType dt, int mode, int K, int N, int B, const std::vector<float>& wf,
                    const std::vector<float>& xf, const std::vector<float>& y0,
                    const std::vector<float>& y, const std::vector<uint16_t>& yh,
                    std::vector<double>& ref, std::vector<double>& got) {
  for (int b = 0; b < B; ++b)
    for (int n = 0; n < N; ++n) {
      auto dot = [&](int row) {
        double s = 0;
        for (int kk = 0; kk < K; ++kk)
          s += double(wf[size_t(row) * K + kk]) * xf[size_t(b) * K + kk];
        return s;
      };
      if (mode == 2) {
        const double g = dot(n), u = dot(n + N);
        ref.push_back(g / (1 + std::exp(-g)) * u);
        got.push_back(from16(dt, yh[size_t(b) * N + n]));
      } else {
        ref.push_back(dot(n) + (mode == 1 ? y0[size_t(b) * N + n] : 0.0));
        got.push_back(y[size_t(b) * N + n]);
      }
    }
}

void check_launch(const Status& s) {
  REQUIRE_MESSAGE(s.ok(), s.message());
}

const DType kDtypes[] = {DType::F16, DType::BF16};

}  // namespace

TEST_CASE("kernel image selection") {
  std::vector<KernelImageInfo> im = {{"m", "sm_80", "cubin", "", 0, 0},
                                     {"m", "sm_86", "cubin", "", 0, 0},
                                     {"m", "sm_90a", "cubin", "", 0, 0},
                                     {"m", "compute_80", "ptx", "", 0, 0}};
  CHECK(select_kernel_image(im, 90) == 2);
  CHECK(select_kernel_image(im, 86) == 1);
  CHECK(select_kernel_image(im, 89) == 1);  // sm_86 cubin runs on 8.9
  CHECK(select_kernel_image(im, 80) == 0);
  CHECK(select_kernel_image(im, 100) == 3);  // PTX JIT
  CHECK(select_kernel_image(im, 75) == -1);
  std::vector<KernelImageInfo> only_a = {{"m", "sm_90a", "cubin", "", 0, 0}};
  CHECK(select_kernel_image(only_a, 100) == -1);
}

TEST_CASE("rmsnorm (+ fused residual add, row selection) and embedding gather") {
  if (!have_gpu()) return;
  for (DType dt : kDtypes) {
    CAPTURE(dtype_name(dt));
    Model m = test_model(dt);
    KernelModule& mod = module_for(dt);
    std::mt19937_64 rng(seed() + 1 + int(dt));
    const int H = int(m.cfg.hidden_size), rows = 7;
    std::vector<float> wf;
    auto w = rand16(dt, size_t(H), rng, 1.0f, &wf);
    auto x = randf(size_t(rows) * H, rng, 2.0f), add = randf(size_t(rows) * H, rng, 1.0f);
    DeviceBuffer dw = upload(w), dx = upload(x), dadd = upload(add),
                 dout = poisoned(size_t(rows) * H * 2);
    auto k = mod.get("rmsnorm");
    REQUIRE(k.ok());
    const int* noidx = nullptr;
    // With the residual add.
    check_launch(launch(*k, dim3(rows), dim3(256), 0, nullptr, dx.as<float>(),
                        dadd.as<const float>(), dw.as<const void>(), dout.get(), rows, noidx));
    auto xo = download<float>(dx, x.size());
    auto o = download<uint16_t>(dout, x.size());
    std::vector<double> ref, got, xref, xgot;
    for (int r = 0; r < rows; ++r) {
      double ss = 0;
      for (int c = 0; c < H; ++c) {
        const double v = double(x[r * H + c]) + double(add[r * H + c]);
        ss += v * v;
      }
      const double inv = 1.0 / std::sqrt(ss / H + m.cfg.rms_norm_eps);
      for (int c = 0; c < H; ++c) {
        const double v = double(x[r * H + c]) + double(add[r * H + c]);
        xref.push_back(v);
        xgot.push_back(xo[r * H + c]);
        ref.push_back(v * inv * wf[c]);
        got.push_back(from16(dt, o[r * H + c]));
      }
    }
    CHECK(rel_err(xref, xgot) < 1e-6);
    CHECK(rel_err(ref, got) < 5e-3);
    // Row selection, no add: rows {4, 0, 6} of the updated x.
    std::vector<int> idx = {4, 0, 6};
    DeviceBuffer didx = upload(idx), dout2 = poisoned(3 * size_t(H) * 2);
    check_launch(launch(*k, dim3(3), dim3(256), 0, nullptr, dx.as<float>(),
                        static_cast<const float*>(nullptr), dw.as<const void>(), dout2.get(), 3,
                        didx.as<const int>()));
    auto o2 = download<uint16_t>(dout2, 3 * size_t(H));
    for (int i = 0; i < 3; ++i)
      for (int c = 0; c < H; ++c) CHECK(o2[size_t(i) * H + c] == o[size_t(idx[size_t(i)]) * H + c]);

    // Embedding gather: exact.
    const int V = int(m.cfg.vocab_size);
    auto table = rand16(dt, size_t(V) * H, rng, 1.0f, nullptr);
    std::vector<int> toks(9);
    for (auto& t : toks) t = int(rng() % uint64_t(V));
    DeviceBuffer dt_ = upload(table), dtok = upload(toks), demb = poisoned(toks.size() * H * 4);
    auto ke = mod.get("embedding_gather");
    REQUIRE(ke.ok());
    check_launch(launch(*ke, dim3(unsigned(toks.size())), dim3(128), 0, nullptr,
                        dtok.as<const int>(), dt_.as<const void>(), demb.as<float>(),
                        int(toks.size())));
    auto emb = download<float>(demb, toks.size() * H);
    size_t bad = 0;
    for (size_t t = 0; t < toks.size(); ++t)
      for (int c = 0; c < H; ++c)
        bad += emb[t * H + c] != from16(dt, table[size_t(toks[t]) * H + c]);
    CHECK(bad == 0);
  }
}

TEST_CASE("decode GEMV kernels (plain, residual, fused SwiGLU) for 1..8 rows") {
  if (!have_gpu()) return;
  for (DType dt : kDtypes) {
    CAPTURE(dtype_name(dt));
    Model m = test_model(dt);
    KernelModule& mod = module_for(dt);
    std::mt19937_64 rng(seed() + 10 + int(dt));
    const int H = int(m.cfg.hidden_size), I = int(m.plan.intermediate_per_rank);
    struct Case {
      const char* name;
      int K, N, mode;
    };
    const Case cases[] = {
        {"gemv_hidden", H, 1003, 0}, {"gemv_down_res", I, H, 1}, {"gemv_gate_up_swiglu", H, I, 2}};
    for (const Case& c : cases)
      for (int B : {1, 3, 8}) {
        CAPTURE(c.name);
        CAPTURE(B);
        const int wrows = c.mode == 2 ? 2 * c.N : c.N;
        std::vector<float> wf, xf;
        auto w = rand16(dt, size_t(wrows) * c.K, rng, 0.05f, &wf);
        auto x = rand16(dt, size_t(B) * c.K, rng, 1.0f, &xf);
        auto y0 = randf(size_t(B) * c.N, rng, 1.0f);
        DeviceBuffer dw = upload(w), dx = upload(x);
        DeviceBuffer dy = c.mode == 1 ? upload(y0) : poisoned(size_t(B) * c.N * 4);
        DeviceBuffer dyh = poisoned(size_t(B) * c.N * 2);
        auto k = mod.get(std::string(c.name) + "_b" + std::to_string(B));
        REQUIRE(k.ok());
        const int64_t pairs = c.mode == 2 ? c.N : (c.N + 1) / 2;
        for (int ks : {1, 2, 4}) {  // warps sharing a row pair
          CAPTURE(ks);
          if (ks > 1) {  // fresh outputs: MODE 1 accumulates, the others must be fully written
            dy = c.mode == 1 ? upload(y0) : poisoned(size_t(B) * c.N * 4);
            dyh = poisoned(size_t(B) * c.N * 2);
          }
          check_launch(launch(*k, dim3(unsigned(gpu::gemv_blocks(pairs, ks))), dim3(128), 0,
                              nullptr, dw.as<const void>(), dx.as<const void>(), dy.as<float>(),
                              dyh.get(), c.N, ks));
          std::vector<double> ref, got;
          auto yo = download<float>(dy, size_t(B) * c.N);
          auto yh = download<uint16_t>(dyh, size_t(B) * c.N);
          gemv_reference(dt, c.mode, c.K, c.N, B, wf, xf, y0, yo, yh, ref, got);
          CHECK(rel_err(ref, got) < (c.mode == 2 ? 5e-3 : 1e-5));
        }
      }
  }
}

TEST_CASE("tensor-core decode GEMMs: every matrix, 1..32 rows, K tails, batch invariance") {
  if (!have_gpu()) return;
  for (DType dt : kDtypes)
    for (bool k_tail : {false, true}) {
      if (k_tail && dt == DType::BF16) continue;  // one more module is enough for the tail
      CAPTURE(dtype_name(dt));
      CAPTURE(k_tail);
      Model m = k_tail ? test_model_k_tail(dt) : test_model(dt);
      KernelModule& mod = module_for(dt, k_tail);
      std::mt19937_64 rng(seed() + 15 + int(dt) + 7 * int(k_tail));
      const int H = int(m.cfg.hidden_size), I = int(m.plan.intermediate_per_rank);
      const int QD = int(m.plan.q_heads_per_rank * m.cfg.head_dim);
      const int QKV =
          int((m.plan.q_heads_per_rank + 2 * m.plan.kv_heads_per_rank) * m.cfg.head_dim);
      struct Case {
        const char* name;
        int K, N, mode,
            compiled_n;  // compiled_n: the output count the kernel's split is planned for
      };
      // lm_head with 1003 rows: a partial last tile (the kernel was planned for the vocabulary).
      const Case cases[] = {{"tc_qkv", H, QKV, 0, QKV},
                            {"tc_o_res", QD, H, 1, H},
                            {"tc_gate_up_swiglu", H, I, 2, I},
                            {"tc_down_res", I, H, 1, H},
                            {"tc_lm_head", H, 1003, 0, int(m.cfg.vocab_size)}};
      for (const Case& c : cases) {
        if (k_tail && c.mode != 1 && c.mode != 2) continue;
        const int wrows = c.mode == 2 ? 2 * c.N : c.N;
        std::vector<float> wf, xf;
        auto w = rand16(dt, size_t(wrows) * c.K, rng, 0.05f, &wf);
        constexpr int kMaxB = QW_TC_MAX_ROWS;
        auto x = rand16(dt, size_t(kMaxB) * c.K, rng, 1.0f, &xf);
        auto y0 = randf(size_t(kMaxB) * c.N, rng, 1.0f);
        DeviceBuffer dw = upload(w), dx = upload(x);
        const int split = qw_tc_split(qw_tc_tiles(c.compiled_n, c.mode == 2), c.K);
        const unsigned grid = unsigned(qw_tc_blocks(qw_tc_tiles(c.N, c.mode == 2), split));
        const unsigned block = unsigned(qw_tc_warps_per_block(split) * 32);
        std::vector<double> first_row_out;  // row 0's outputs at B = 1, compared bit for bit later
        for (int B : {1, 5, 8, 13, 16, 27, 32}) {
          CAPTURE(c.name);
          CAPTURE(B);
          DeviceBuffer dy = c.mode == 1 ? upload(y0) : poisoned(size_t(kMaxB) * c.N * 4);
          DeviceBuffer dyh = poisoned(size_t(kMaxB) * c.N * 2);
          const int nt = qw_tc_ntiles(B);
          auto k = mod.get(std::string(c.name) + "_n" + std::to_string(nt));
          REQUIRE(k.ok());
          check_launch(launch(*k, dim3(grid), dim3(block), 0, nullptr, dw.as<const void>(),
                              dx.as<const void>(), dy.as<float>(), dyh.get(), c.N, B));
          std::vector<double> ref, got;
          auto yo = download<float>(dy, size_t(kMaxB) * c.N);
          auto yh = download<uint16_t>(dyh, size_t(kMaxB) * c.N);
          gemv_reference(dt, c.mode, c.K, c.N, B, wf, xf, y0, yo, yh, ref, got);
          CHECK(rel_err(ref, got) < (c.mode == 2 ? 5e-3 : 1e-5));
          // Rows past B stay untouched (poison / the residual as it was).
          size_t touched = 0;
          for (size_t i = size_t(B) * c.N; i < size_t(kMaxB) * c.N; ++i) {
            if (c.mode == 2)
              touched += yh[i] != 0xFFFF;
            else if (c.mode == 1)
              touched += yo[i] != y0[i];
            else
              touched += !std::isnan(yo[i]);
          }
          CHECK(touched == 0);
          // A row's result does not depend on the batch around it.
          std::vector<double> row0(got.begin(), got.begin() + c.N);
          if (B == 1) first_row_out = row0;
          CHECK(row0 == first_row_out);
        }
      }
    }
}

TEST_CASE(
    "QKV bias + RoPE + paged KV write, paged attention (split and unsplit), fused decode "
    "attention") {
  if (!have_gpu()) return;
  for (DType dt : kDtypes) {
    CAPTURE(dtype_name(dt));
    Model m = test_model(dt);
    KernelModule& mod = module_for(dt);
    std::mt19937_64 rng(seed() + 20 + int(dt));
    const int D = int(m.cfg.head_dim), QH = int(m.plan.q_heads_per_rank),
              KVH = int(m.plan.kv_heads_per_rank);
    const int G = QH / KVH, BT = kKvBlockTokens, COLS = (QH + 2 * KVH) * D;
    // Three sequences; the rows of this "step" are the last `rows_of[s]` positions of each.
    const std::vector<int> lens = {37, 130, 5}, rows_of = {1, 9, 5};
    const int nblocks_pool = 20;
    std::vector<int> perm(nblocks_pool - 1);
    for (int i = 0; i < nblocks_pool - 1; ++i) perm[size_t(i)] = i + 1;
    std::shuffle(perm.begin(), perm.end(), rng);
    const int stride = 8;
    std::vector<int> tables(lens.size() * stride, 0);
    int next = 0;
    for (size_t s = 0; s < lens.size(); ++s)
      for (int b = 0; b < (lens[s] + BT - 1) / BT; ++b)
        tables[s * stride + size_t(b)] = perm[size_t(next++)];
    const size_t pool_elems = size_t(nblocks_pool) * KVH * BT * D;
    DeviceBuffer kc = poisoned(pool_elems * 2), vc = poisoned(pool_elems * 2);
    // Fill every cached position through the rope kernel (checks it too): all positions of
    // all sequences, in one launch.
    std::vector<int> pos_all, seq_all;
    std::vector<long long> slot_all;
    for (size_t s = 0; s < lens.size(); ++s)
      for (int p = 0; p < lens[s]; ++p) {
        pos_all.push_back(p);
        seq_all.push_back(int(s));
        slot_all.push_back((long long)tables[s * stride + size_t(p / BT)] * BT + p % BT);
      }
    const int n_all = int(pos_all.size());
    auto qkv = randf(size_t(n_all) * COLS, rng, 1.0f);
    std::vector<float> biasf;
    auto bias = rand16(dt, size_t(COLS), rng, 0.5f, &biasf);
    m.cfg.rope_theta = 1000000.0;
    auto rp = cpu::compute_rope_params(m.cfg);
    REQUIRE(rp.ok());
    const float mscale = 1.0f;
    DeviceBuffer dqkv = upload(qkv), dbias = upload(bias), dpos = upload(pos_all),
                 dslot = upload(slot_all), dinv = upload(rp->inv_freq),
                 dq = poisoned(size_t(n_all) * QH * D * 4);
    auto kr = mod.get("qkv_rope_kv");
    REQUIRE(kr.ok());
    check_launch(launch(*kr, dim3(unsigned(n_all), unsigned(QH + 2 * KVH)), dim3(unsigned(D / 2)),
                        0, nullptr, dqkv.as<const float>(), dbias.as<const void>(),
                        dpos.as<const int>(), dslot.as<const long long>(), dinv.as<const float>(),
                        mscale, dq.as<float>(), kc.get(), vc.get(), n_all));
    auto qh = download<float>(dq, size_t(n_all) * QH * D);
    auto kh = download<uint16_t>(kc, pool_elems), vh = download<uint16_t>(vc, pool_elems);
    // Reference rope (double math on the fp32 angle, as transformers rounds it).
    std::vector<double> rq, gq, rk, gk;
    auto kv_at = [&](const std::vector<uint16_t>& cache, long long slot, int h, int d) {
      const long long blk = slot / BT, off = slot % BT;
      return from16(dt, cache[size_t(((blk * KVH + h) * BT + off) * D + d)]);
    };
    std::vector<double> kref(size_t(n_all) * KVH * D), vref(size_t(n_all) * KVH * D),
        qref(size_t(n_all) * QH * D);
    for (int r = 0; r < n_all; ++r) {
      std::vector<float> cs(size_t(D / 2)), sn(size_t(D / 2));
      cpu::rope_cos_sin(*rp, pos_all[size_t(r)], cs.data(), sn.data());
      for (int h = 0; h < QH + KVH; ++h)
        for (int j = 0; j < D / 2; ++j) {
          const int c0 = h * D + j, c1 = c0 + D / 2;
          const double x0 = double(qkv[size_t(r) * COLS + c0]) + biasf[size_t(c0)];
          const double x1 = double(qkv[size_t(r) * COLS + c1]) + biasf[size_t(c1)];
          const double y0 = x0 * cs[size_t(j)] - x1 * sn[size_t(j)],
                       y1 = x1 * cs[size_t(j)] + x0 * sn[size_t(j)];
          if (h < QH) {
            qref[(size_t(r) * QH + h) * D + j] = y0;
            qref[(size_t(r) * QH + h) * D + j + D / 2] = y1;
            rq.push_back(y0), rq.push_back(y1);
            gq.push_back(qh[(size_t(r) * QH + h) * D + j]),
                gq.push_back(qh[(size_t(r) * QH + h) * D + j + D / 2]);
          } else {
            rk.push_back(y0), rk.push_back(y1);
            gk.push_back(kv_at(kh, slot_all[size_t(r)], h - QH, j));
            gk.push_back(kv_at(kh, slot_all[size_t(r)], h - QH, j + D / 2));
          }
        }
      for (int h = 0; h < KVH; ++h)
        for (int d = 0; d < D; ++d) {
          const int c = (QH + KVH) * D + h * D + d;
          rk.push_back(double(qkv[size_t(r) * COLS + c]) + biasf[size_t(c)]);
          gk.push_back(kv_at(vh, slot_all[size_t(r)], h, d));
        }
    }
    CHECK(rel_err(rq, gq) < 1e-5);
    CHECK(rel_err(rk, gk) < 5e-3);

    // Attention over the step rows, reading K/V as stored (16-bit).
    std::vector<int> arow_seq, arow_pos, arow_all;
    for (size_t s = 0, base = 0; s < lens.size(); base += size_t(lens[s]), ++s)
      for (int p = lens[s] - rows_of[s]; p < lens[s]; ++p) {
        arow_seq.push_back(int(s));
        arow_pos.push_back(p);
        arow_all.push_back(int(base) + p);
      }
    const int R = int(arow_seq.size());
    std::vector<float> q_rows(size_t(R) * QH * D);
    for (int r = 0; r < R; ++r)
      std::memcpy(&q_rows[size_t(r) * QH * D], &qh[size_t(arow_all[size_t(r)]) * QH * D],
                  size_t(QH) * D * 4);
    std::vector<double> aref(size_t(R) * QH * D);
    const double scale = 1.0 / std::sqrt(double(D));
    for (int r = 0; r < R; ++r) {
      const int s = arow_seq[size_t(r)], pos = arow_pos[size_t(r)];
      for (int h = 0; h < QH; ++h) {
        const int kvh = h / G;
        std::vector<double> sc(size_t(pos) + 1);
        double mx = -INFINITY;
        for (int j = 0; j <= pos; ++j) {
          const long long slot =
              (long long)tables[size_t(s) * stride + size_t(j / BT)] * BT + j % BT;
          double acc = 0;
          for (int d = 0; d < D; ++d)
            acc += double(q_rows[(size_t(r) * QH + h) * D + d]) * kv_at(kh, slot, kvh, d);
          sc[size_t(j)] = acc * scale;
          mx = std::max(mx, sc[size_t(j)]);
        }
        double den = 0;
        for (auto& v : sc) den += (v = std::exp(v - mx));
        for (int j = 0; j <= pos; ++j) {
          const long long slot =
              (long long)tables[size_t(s) * stride + size_t(j / BT)] * BT + j % BT;
          for (int d = 0; d < D; ++d)
            aref[(size_t(r) * QH + h) * D + d] += sc[size_t(j)] / den * kv_at(vh, slot, kvh, d);
        }
      }
    }
    DeviceBuffer dqr = upload(q_rows), drs = upload(arow_seq), dap = upload(arow_pos),
                 dtab = upload(tables);
    auto ka = mod.get("attention_paged"), kcmb = mod.get("attention_combine");
    REQUIRE(ka.ok());
    REQUIRE(kcmb.ok());
    const float scale_log2 = float(scale * 1.4426950408889634);
    for (int nsplit : {1, 3, 7}) {
      CAPTURE(nsplit);
      DeviceBuffer dout = poisoned(size_t(R) * QH * D * 2);
      DeviceBuffer po = poisoned(size_t(R) * QH * nsplit * D * 4),
                   pml = poisoned(size_t(R) * QH * nsplit * 2 * 4);
      check_launch(launch(*ka, dim3(R, KVH, nsplit), dim3(128), 0, nullptr, dqr.as<const float>(),
                          kc.as<const void>(), vc.as<const void>(), drs.as<const int>(),
                          dap.as<const int>(), dtab.as<const int>(), stride, nsplit, scale_log2,
                          dout.get(), po.as<float>(), pml.as<float>()));
      if (nsplit > 1)
        check_launch(launch(*kcmb, dim3(R, QH), dim3(D), 0, nullptr, po.as<const float>(),
                            pml.as<const float>(), nsplit, dout.get()));
      auto o = download<uint16_t>(dout, size_t(R) * QH * D);
      std::vector<double> got(o.size());
      for (size_t i = 0; i < o.size(); ++i) got[i] = from16(dt, o[i]);
      CHECK(rel_err(aref, got) < 5e-3);
    }

    // attention_decode: the last position of each sequence as a decode row (raw qkv in; it
    // applies bias + RoPE, writes that position's K/V itself and merges its splits). Those
    // slots are poisoned first: the kernel must write them before attending.
    std::vector<int> dec_seq, dec_pos, drow;  // drow: the row of the attention rows above
    std::vector<long long> dec_slot;
    std::vector<float> dqkv_rows;
    for (size_t s = 0, base = 0, ar = 0; s < lens.size(); base += size_t(lens[s]), ++s) {
      ar += size_t(rows_of[s]);
      const size_t all = base + size_t(lens[s]) - 1;
      dec_seq.push_back(int(s));
      dec_pos.push_back(lens[s] - 1);
      dec_slot.push_back(slot_all[all]);
      drow.push_back(int(ar) - 1);
      dqkv_rows.insert(dqkv_rows.end(), qkv.begin() + long(all * COLS),
                       qkv.begin() + long((all + 1) * COLS));
    }
    const int RD = int(dec_seq.size());
    auto kd = mod.get("attention_decode");
    REQUIRE(kd.ok());
    DeviceBuffer ddq = upload(dqkv_rows), dds = upload(dec_seq), ddp = upload(dec_pos),
                 ddsl = upload(dec_slot), dcnt = poisoned(size_t(RD) * KVH * 4);
    REQUIRE(cudaMemset(dcnt.get(), 0, size_t(RD) * KVH * 4) == cudaSuccess);
    for (int nsplit : {1, 3, 7, 32}) {
      for (int rep = 0; rep < 2; ++rep) {  // the second launch reuses the counters
        CAPTURE(nsplit);
        CAPTURE(rep);
        for (int r = 0; r < RD; ++r)
          for (int h = 0; h < KVH; ++h) {
            const long long blk = dec_slot[size_t(r)] / BT, off = dec_slot[size_t(r)] % BT;
            const size_t at = size_t(((blk * KVH + h) * BT + off) * D) * 2;
            REQUIRE(cudaMemset(kc.as<uint8_t>() + at, 0xff, size_t(D) * 2) == cudaSuccess);
            REQUIRE(cudaMemset(vc.as<uint8_t>() + at, 0xff, size_t(D) * 2) == cudaSuccess);
          }
        DeviceBuffer dout = poisoned(size_t(RD) * QH * D * 2);
        DeviceBuffer po = poisoned(size_t(RD) * QH * nsplit * D * 4),
                     pml = poisoned(size_t(RD) * QH * nsplit * 2 * 4);
        check_launch(launch(*kd, dim3(RD, KVH, nsplit), dim3(128), 0, nullptr,
                            ddq.as<const float>(), dbias.as<const void>(), ddp.as<const int>(),
                            ddsl.as<const long long>(), dinv.as<const float>(), mscale, kc.get(),
                            vc.get(), dds.as<const int>(), dtab.as<const int>(), stride, nsplit,
                            scale_log2, dout.get(), po.as<float>(), pml.as<float>(),
                            dcnt.as<int>()));
        // The cache again holds what qkv_rope_kv wrote (same arithmetic: equal values).
        CHECK(download<uint16_t>(kc, pool_elems) == kh);
        CHECK(download<uint16_t>(vc, pool_elems) == vh);
        const std::vector<int> counters = download<int>(dcnt, size_t(RD) * KVH);
        CHECK(std::count(counters.begin(), counters.end(), 0) == long(counters.size()));
        auto o = download<uint16_t>(dout, size_t(RD) * QH * D);
        std::vector<double> got(o.size()), want(o.size());
        for (int r = 0; r < RD; ++r)
          for (int e = 0; e < QH * D; ++e) {
            got[size_t(r) * QH * D + size_t(e)] = from16(dt, o[size_t(r) * QH * D + size_t(e)]);
            want[size_t(r) * QH * D + size_t(e)] =
                aref[size_t(drow[size_t(r)]) * QH * D + size_t(e)];
          }
        CHECK(rel_err(want, got) < 5e-3);
      }
    }
  }
}

TEST_CASE("tensor-core prefill attention (flash tiles over the paged cache, causal, GQA)") {
  if (!have_gpu()) return;
  for (DType dt : kDtypes) {
    CAPTURE(dtype_name(dt));
    Model m = test_model(dt);
    KernelModule& mod = module_for(dt);
    std::mt19937_64 rng(seed() + 40 + int(dt));
    const int D = int(m.cfg.head_dim), QH = int(m.plan.q_heads_per_rank),
              KVH = int(m.plan.kv_heads_per_rank);
    const int G = QH / KVH, BT = kKvBlockTokens, kTile = 64;
    // Sequences: cached length after this step, and how many of their last positions are
    // rows of this step (a whole 300-token prompt: 5 tiles; a chunk continuing a prompt; a
    // single row; a tile of exactly 64 rows ending on a block boundary).
    const std::vector<int> lens = {300, 77, 1, 128}, rows_of = {300, 13, 1, 64};
    const int stride = 16, nblocks_pool = 24;
    std::vector<int> perm(nblocks_pool - 1);
    for (int i = 0; i < nblocks_pool - 1; ++i) perm[size_t(i)] = i + 1;
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<int> tables(lens.size() * stride, 0);
    int next = 0;
    for (size_t s = 0; s < lens.size(); ++s)
      for (int b = 0; b < (lens[s] + BT - 1) / BT; ++b)
        tables[s * stride + size_t(b)] = perm[size_t(next++)];
    // Cache: NaN everywhere (0xffff) except the slots of cached positions.
    const size_t pool_elems = size_t(nblocks_pool) * KVH * BT * D;
    std::vector<uint16_t> kh(pool_elems, 0xffff), vh(pool_elems, 0xffff);
    auto idx = [&](size_t s, int p, int h, int d) {
      const long long blk = tables[s * stride + size_t(p / BT)];
      return size_t(((blk * KVH + h) * BT + p % BT) * D + d);
    };
    std::normal_distribution<float> nd(0.f, 1.f);
    for (size_t s = 0; s < lens.size(); ++s)
      for (int p = 0; p < lens[s]; ++p)
        for (int h = 0; h < KVH; ++h)
          for (int d = 0; d < D; ++d) {
            kh[idx(s, p, h, d)] = to16(dt, nd(rng));
            vh[idx(s, p, h, d)] = to16(dt, nd(rng));
          }
    // Rows, tiles.
    std::vector<int> rseq, rpos;
    std::vector<int> tiles;  // int4 {first row, rows, first pos, table row}
    for (size_t s = 0; s < lens.size(); ++s) {
      const int first = int(rseq.size()), p0 = lens[s] - rows_of[s];
      for (int p = p0; p < lens[s]; ++p) rseq.push_back(int(s)), rpos.push_back(p);
      for (int t0 = 0; t0 < rows_of[s]; t0 += kTile)
        tiles.insert(tiles.end(), {first + t0, std::min(kTile, rows_of[s] - t0), p0 + t0, int(s)});
    }
    const int R = int(rseq.size()), ntiles = int(tiles.size() / 4);
    auto q = randf(size_t(R) * QH * D, rng, 1.5f);
    const double scale = 1.0 / std::sqrt(double(D));
    std::vector<double> ref(size_t(R) * QH * D, 0.0);
    for (int r = 0; r < R; ++r) {
      const size_t s = size_t(rseq[size_t(r)]);
      const int pos = rpos[size_t(r)];
      for (int h = 0; h < QH; ++h) {
        const int kvh = h / G;
        std::vector<double> sc(size_t(pos) + 1);
        double mx = -INFINITY;
        for (int j = 0; j <= pos; ++j) {
          double acc = 0;
          for (int d = 0; d < D; ++d)
            acc += double(q[(size_t(r) * QH + h) * D + d]) * from16(dt, kh[idx(s, j, kvh, d)]);
          sc[size_t(j)] = acc * scale;
          mx = std::max(mx, sc[size_t(j)]);
        }
        double den = 0;
        for (auto& v : sc) den += (v = std::exp(v - mx));
        for (int j = 0; j <= pos; ++j)
          for (int d = 0; d < D; ++d)
            ref[(size_t(r) * QH + h) * D + d] +=
                sc[size_t(j)] / den * from16(dt, vh[idx(s, j, kvh, d)]);
      }
    }
    DeviceBuffer dk = upload(kh), dv = upload(vh), dq = upload(q), dtiles = upload(tiles),
                 dtab = upload(tables);
    DeviceBuffer dout = poisoned(size_t(R) * QH * D * 2);
    auto kf = mod.get("attention_prefill_tc");
    REQUIRE(kf.ok());
    const float scale_log2 = float(scale * 1.4426950408889634);
    check_launch(launch(*kf, dim3(unsigned(ntiles), unsigned(QH)), dim3(128), 0, nullptr,
                        dq.as<const float>(), dk.as<const void>(), dv.as<const void>(),
                        static_cast<const int4*>(dtiles.get()), dtab.as<const int>(), stride,
                        scale_log2, dout.get()));
    REQUIRE(cudaGetLastError() == cudaSuccess);
    auto o = download<uint16_t>(dout, size_t(R) * QH * D);
    std::vector<double> got(o.size());
    for (size_t i = 0; i < o.size(); ++i) got[i] = from16(dt, o[i]);
    const double err = rel_err(ref, got);
    std::printf("flash prefill attention (%s): %d rows, %d tiles, rel err %.2e\n",
                std::string(dtype_name(dt)).c_str(), R, ntiles, err);
    CHECK(err < (dt == DType::BF16 ? 1.5e-2 : 3e-3));
    // Per-row check as well: a wrong mask on one tile would hide in the global norm.
    double worst = 0;
    for (int r = 0; r < R; ++r) {
      std::vector<double> rr(ref.begin() + long(r) * QH * D, ref.begin() + long(r + 1) * QH * D);
      std::vector<double> gg(got.begin() + long(r) * QH * D, got.begin() + long(r + 1) * QH * D);
      worst = std::max(worst, rel_err(rr, gg));
    }
    CHECK(worst < (dt == DType::BF16 ? 3e-2 : 6e-3));
  }
}

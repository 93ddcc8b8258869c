// INT4 kernels (kernels_templates/gemv_int4.cuh) on the GPU against the CPU reference
// (dequantize_int4_rows + a float64 matmul), on fresh random matrices and activations (the
// seed is printed), with NaN-poisoned outputs and every CUDA call checked. The module is
// compiled with NVRTC for the device from the embedded templates plus test instantiations
// covering group sizes 32/64/128/K, zeros or symmetric, act-order or not, N not a multiple
// of 64, 1..16 rows and split-K factors from 1 to more splits than chunks.
//
// Tolerances. Exact mode: activations are small integers and scales powers of two (2^0 ..
// 2^-6), so every mma sum is an integer below 2^20, every scaled group sum and every
// partial sum a multiple of 2^-6 far below 2^18: fp32 holds them all exactly whatever the
// summation order and the tensor cores' internal rounding, and the GPU must equal the
// reference bit for bit (any index error shows). Random mode (N(0,1) activations, realistic
// scales): |y - ref| <= 1e-5 * sum_k |w_k x_k| + 1e-6, a few fp32 ulps of the worst-case magnitude
// for K <= 4096 (fp32 accumulation of K terms in chunks of 16 adds <~ sqrt(K/16) * 2^-24
// relative error; the tensor core's truncating adds at most double it). SwiGLU outputs are
// fp16: 2^-10 relative plus the propagated fp32 error.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "compiler/kernel_compiler.h"
#include "core/half.h"
#include "gpu/cuda_util.h"
#include "gpu/gpu_test_support.h"
#include "gpu/kernel_module.h"
#include "kernels_templates/int4_index.cuh"
#include "tests/quant/int4_kernel_test_support.h"

using namespace qw;
using namespace qw::gpu;
using namespace qw::testing;

namespace {

using qw::testing::have_gpu;
uint64_t seed() {
  return qw::testing::gpu_test_seed();
}

// Test shapes: (K, GROUP) instantiations beyond the model's. Kernel names t_K_G_MODE_mX.
struct Inst {
  int k, group;
};
const Inst kInsts[] = {{256, 32},  {256, 64},  {256, 128},  {256, 256},
                       {384, 384}, {144, 144}, {2048, 128}, {4096, 64}};

std::string inst_name(int k, int group, int mode) {
  return "t_" + std::to_string(k) + "_" + std::to_string(group) + "_" + std::to_string(mode);
}

KernelModule& module() {
  static std::unique_ptr<KernelModule> mod;
  if (!mod) {
    ModelConfig c;
    c.hidden_size = 256, c.intermediate_size = 512, c.head_dim = 64, c.vocab_size = 1000;
    c.num_attention_heads = 4, c.num_key_value_heads = 2, c.num_hidden_layers = 1,
    c.rms_norm_eps = 1e-6;
    auto plan = make_tp_plan(c, 1);
    REQUIRE(plan.ok());
    const Int4KernelConstants k = int4_kernel_constants_for(c, *plan, 128);
    std::string src = kernel_source(c, *plan, DType::F16, &k);
    for (const Inst& i : kInsts)
      for (int mode = 0; mode < 3; ++mode)
        src += "QW4_GEMM_INST(" + inst_name(i.k, i.group, mode) + ", " + std::to_string(i.k) +
               ", " + std::to_string(i.group) + ", " + std::to_string(mode) + ")\n";
    int major = 0, minor = 0;
    REQUIRE(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) == cudaSuccess);
    REQUIRE(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0) == cudaSuccess);
    const int cc = major * 10 + minor;
    const std::string arch = "sm_" + std::to_string(cc) + (cc == 90 ? "a" : "");
    const auto t0 = std::chrono::steady_clock::now();
    auto cubin = nvrtc_compile(src, arch);
    REQUIRE_MESSAGE(cubin.ok(), cubin.status().message());
    KernelImageInfo im{"qwen2", arch, "cubin", "", 0, cubin->size()};
    auto m = KernelModule::load_images({im}, *cubin, c, *plan, DType::F16, 0, &k);
    REQUIRE_MESSAGE(m.ok(), m.status().message());
    std::printf("int4 module: %s in %.1f s\n", arch.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    mod = std::make_unique<KernelModule>(std::move(*m));
  }
  return *mod;
}

int num_sms() {
  int n = 0;
  REQUIRE(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, 0) == cudaSuccess);
  return n;
}

void check_launch(const Status& s) {
  REQUIRE_MESSAGE(s.ok(), s.message());
}

struct Gemm {
  int64_t n, k, group;
  bool zeros, perm;
  int mode;
};

struct Result {
  std::vector<float> y;
  std::vector<uint16_t> yh;
};

// One launch on fresh buffers; the counters are zeroed once and must come back zero.
Result run_gemm(const RandomInt4& r, const std::vector<uint16_t>& x, const Gemm& g, int batch,
                int splits, const std::vector<float>& y0) {
  const int N = int(g.n), n_pad = int(r.m.padded_rows), inter = N / 2;
  const std::string name = inst_name(int(g.k), int(g.group), g.mode) + (batch > 8 ? "_m16" : "_m8");
  auto kern = module().get(name);
  REQUIRE_MESSAGE(kern.ok(), kern.status().message());
  DeviceBuffer dw = upload(r.packed), ds = upload(r.scales), dz = upload(r.zeros),
               dp = upload(r.m.perm), dx = upload(x);
  DeviceBuffer dy = g.mode == 1 ? upload(y0) : poisoned(size_t(batch) * N * 4);
  DeviceBuffer dyh = poisoned(size_t(std::max(1, batch * inter)) * 2);
  DeviceBuffer dws =
      poisoned(size_t(qw4_workspace_floats(n_pad / 64, splits, batch, n_pad, g.mode)) * 4);
  const size_t nc = size_t(qw4_counter_ints(n_pad, N, g.mode));
  auto dc = DeviceBuffer::alloc(nc * 4, "test");
  REQUIRE(dc.ok());
  REQUIRE(cudaMemset(dc->get(), 0, nc * 4) == cudaSuccess);
  const unsigned char* zp = g.zeros ? dz.as<const unsigned char>() : nullptr;
  const int* pp = g.perm ? dp.as<const int>() : nullptr;
  const int mh = batch > 8 ? 2 : 1, smem = qw4_smem_bytes(int(g.group) / 16, mh);
  REQUIRE(cudaKernelSetAttributeForDevice(*kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem,
                                          0) == cudaSuccess);
  check_launch(launch(*kern, dim3(unsigned(n_pad / 64), unsigned(splits)), dim3(QW4_THREADS),
                      size_t(smem), nullptr, dw.as<const void>(), ds.as<const void>(), zp, pp,
                      int(r.m.zero_point), dx.as<const void>(), dy.as<float>(), dyh.as<void>(),
                      dws.as<float>(), dc->as<int>(), N, n_pad, batch));
  REQUIRE(cudaGetLastError() == cudaSuccess);
  Result res;
  res.y = download<float>(dy, size_t(batch) * N);
  res.yh = download<uint16_t>(dyh, size_t(batch) * inter);
  auto counters = download<int>(*dc, nc);
  for (int c : counters) CHECK(c == 0);
  return res;
}

// The smallest magnitude fp16 round-to-nearest takes to infinity (65504 + half an ulp).
constexpr double kF16Overflow = 65520.0;

void check_gemm(const Gemm& g, int batch, int splits, bool exact, std::mt19937_64& rng) {
  CAPTURE(g.n);
  CAPTURE(g.k);
  CAPTURE(g.group);
  CAPTURE(g.zeros);
  CAPTURE(g.perm);
  CAPTURE(g.mode);
  CAPTURE(batch);
  CAPTURE(splits);
  CAPTURE(exact);
  RandomInt4 r;
  make_random_int4(r, g.n, g.k, g.group, g.zeros, g.perm, exact ? Scales::kPow2 : Scales::kRandom,
                   rng);
  auto x = random_activations(batch, g.k, exact, rng);
  std::vector<double> ref, mag;
  reference_gemm(r, x, batch, ref, mag);
  const int N = int(g.n), inter = N / 2;
  std::vector<float> y0(size_t(batch) * N);
  for (auto& v : y0) v = float(int(rng() % 64) - 32);
  const Result res = run_gemm(r, x, g, batch, splits, y0);
  size_t bad = 0;
  double worst = 0;
  for (int b = 0; b < batch; ++b)
    for (int n = 0; n < (g.mode == 2 ? inter : N); ++n) {
      const size_t i = size_t(b) * N + size_t(n);
      double want, got, tol;
      if (g.mode == 2) {
        const size_t iu = size_t(b) * N + size_t(inter + n);
        want = silu_mul(ref[i], ref[iu]);
        got = f16_to_f32(res.yh[size_t(b) * inter + size_t(n)]);
        // fp16 rounding of the output + the fp32 error of g and u carried through SwiGLU.
        tol = std::abs(want) * 1.0e-3 +
              1e-5 * (mag[i] * std::abs(ref[iu]) + mag[iu] * std::abs(ref[i])) + 1e-6;
      } else {
        want = ref[i] + (g.mode == 1 ? double(y0[i]) : 0.0);
        got = res.y[i];
        tol = exact ? 0.0 : 1e-5 * mag[i] + 1e-6;
        if (exact && g.mode == 1) tol = 0.0;
      }
      // Past fp16's range the SwiGLU output is +-inf, as fp16 rounding makes it; exact-mode
      // inputs (integers up to 8, K up to thousands) reach that.
      if (g.mode == 2 && std::abs(want) >= kF16Overflow) {
        if (!(std::isinf(got) && (got > 0) == (want > 0))) ++bad;
        continue;
      }
      const double err = std::abs(got - want);
      if (!(err <= tol)) ++bad;  // NaN counts as bad
      if (tol > 0) worst = std::max(worst, err / tol);
    }
  CHECK(bad == 0);
  if (worst > 0.5) std::printf("  note: error reached %.2f of the tolerance\n", worst);
}

}  // namespace

TEST_CASE("INT4 GEMM: every mode, 1..16 rows, group 32/64/128/K, zeros, act-order, odd N") {
  if (!have_gpu()) return;
  std::mt19937_64 rng(seed() + 100);
  const Gemm cases[] = {
      {200, 256, 32, false, false, 0},    {200, 256, 64, true, false, 0},
      {200, 256, 128, false, true, 0},    {200, 256, 256, true, true, 0},
      {130, 384, 384, false, false, 1},   {64, 144, 144, true, true, 1},
      {70, 256, 32, true, true, 1},       {200, 256, 64, false, false, 2},
      {192, 256, 128, true, true, 2},     {38, 256, 32, true, false, 2},
      {1000, 2048, 128, false, false, 0}, {600, 4096, 64, true, false, 1},
      {1100, 2048, 128, false, true, 2},
  };
  const int sms = num_sms();
  for (const Gemm& g : cases)
    for (int batch : {1, 2, 5, 8, 9, 16}) {
      const int chunks =
          int(g.k) / 16 / qw4_kernel_chunk_slabs(int(g.group) / 16, batch > 8 ? 2 : 1);
      const int plan =
          qw4_plan_splits(int(quant::int4_padded_rows(g.n) / 64), chunks, sms * QW4_BLOCKS_PER_SM);
      // 40 splits exceed the chunks of the small cases: blocks with nothing to add must still
      // take part in the tile's reduction.
      for (int splits : {1, 3, plan, batch == 5 ? 40 : 2})
        for (bool exact : {true, false}) check_gemm(g, batch, splits, exact, rng);
    }
}

TEST_CASE("INT4 GEMM is deterministic and batch-invariant for a given kernel and split") {
  if (!have_gpu()) return;
  std::mt19937_64 rng(seed() + 200);
  const Gemm g{600, 4096, 64, true, false, 0};
  RandomInt4 r;
  make_random_int4(r, g.n, g.k, g.group, g.zeros, g.perm, Scales::kRandom, rng);
  auto x16 = random_activations(16, g.k, false, rng);
  auto rows = [&](int b) { return std::vector<uint16_t>(x16.begin(), x16.begin() + b * g.k); };
  const int splits = 5;
  std::vector<float> none;
  const Result a = run_gemm(r, x16, g, 16, splits, none), b = run_gemm(r, x16, g, 16, splits, none);
  CHECK(a.y == b.y);  // bitwise, run to run (no float atomics)
  // Rows do not interact: row 0 of a batch of 1 == of 8 (m8 kernel), of 9 == of 16 (m16).
  // (m8 and m16 cut K into different chunks, so they differ in the last bits.)
  const Result one = run_gemm(r, rows(1), g, 1, splits, none),
               eight = run_gemm(r, rows(8), g, 8, splits, none);
  const Result nine = run_gemm(r, rows(9), g, 9, splits, none);
  for (int64_t n = 0; n < g.n; ++n) {
    CHECK(one.y[size_t(n)] == eight.y[size_t(n)]);
    CHECK(nine.y[size_t(n)] == a.y[size_t(n)]);
  }
}

TEST_CASE("INT4 dequantize to dense fp16 is bit-exact (perm undone, odd N, ld > K)") {
  if (!have_gpu()) return;
  std::mt19937_64 rng(seed() + 300);
  auto kern = module().get("int4_dequant_f16");
  REQUIRE(kern.ok());
  struct D {
    int64_t n, k, group;
    bool zeros, perm;
  };
  for (const D& d : {D{200, 256, 32, true, true}, D{70, 144, 144, false, false},
                     D{1000, 2048, 128, true, false}, D{64, 48, 16, false, true}}) {
    CAPTURE(d.n);
    CAPTURE(d.k);
    RandomInt4 r;
    make_random_int4(r, d.n, d.k, d.group, d.zeros, d.perm, Scales::kRandom, rng);
    const long long ld = d.k + 8;
    DeviceBuffer dw = upload(r.packed), ds = upload(r.scales), dz = upload(r.zeros),
                 dp = upload(r.m.perm);
    DeviceBuffer dout = poisoned(size_t(d.n * ld) * 2);
    const int n_pad = int(r.m.padded_rows);
    check_launch(launch(*kern, dim3(unsigned(n_pad / 64), unsigned((d.k + 63) / 64)), dim3(128), 0,
                        nullptr, dw.as<const void>(), ds.as<const void>(),
                        d.zeros ? dz.as<const unsigned char>() : nullptr,
                        d.perm ? dp.as<const int>() : nullptr, int(r.m.zero_point), int(d.k),
                        int(d.n), n_pad, int(d.group), dout.as<void>(), ld));
    auto out = download<uint16_t>(dout, size_t(d.n * ld));
    size_t bad = 0, pad_touched = 0;
    for (int64_t n = 0; n < d.n; ++n) {
      for (int64_t c = 0; c < d.k; ++c)
        bad += out[size_t(n * ld + c)] != f32_to_f16(r.dense[size_t(n * d.k + c)]);
      for (int64_t c = d.k; c < ld; ++c) pad_touched += out[size_t(n * ld + c)] != 0xffff;
    }
    CHECK(bad == 0);
    CHECK(pad_touched == 0);
  }
}

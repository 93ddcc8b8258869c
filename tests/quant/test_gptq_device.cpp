// Where GPTQ runs (--gptq-device), without a GPU: flag parsing, the auto/cpu/gpu decision for
// every probe outcome, the pipeline's dispatch to a (fake) GPU backend and its refusal when
// there is none, the host-side pieces the GPU path shares with quantize_gptq, and -- when this
// machine has no GPU -- qwc itself: --gptq-device gpu fails with one line, auto compiles.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "compiler/gptq/gptq_device.h"
#include "compiler/gptq/quantizer.h"
#include "quant_test_support.h"
#ifdef QW_HAVE_GPTQ_GPU
#include "compiler/gptq/gpu/gpu_backend.h"
#endif

using namespace qw;
using namespace qw::gptq;

namespace {

GpuGptqBackend fake_backend(int devices, const std::string& name, int* calls = nullptr) {
  GpuGptqBackend b;
  b.probe = [=] {
    GpuProbe p;
    p.devices = devices;
    if (devices > 0)
      p.name = name;
    else
      p.reason = "no usable CUDA driver or device (fake)";
    return p;
  };
  // Stands in for the GPU: runs the CPU quantizer and counts the calls.
  b.quantize_model = [calls](const ModelConfig& c, const Checkpoint& ck,
                             const ModelQuantizeOptions& o) {
    if (calls) ++*calls;
    return quantize_model(c, ck, o);
  };
  return b;
}

CompileOptions tiny_gptq(const std::string& out) {
  CompileOptions o;
  o.checkpoint_dir = testing::tiny_checkpoint();
  o.output = out;
  o.threads = 2;
  o.int4 = true;
  o.calib_builtin = true;
  o.group_size = 64;
  o.calib_max_tokens = 256;
  o.calib_seq_len = 128;
  return o;
}

#ifdef QW_HAVE_GPTQ_GPU
// Runs a command, returning its exit status and (merged) output.
std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  std::array<char, 512> buf{};
  while (fgets(buf.data(), int(buf.size()), p)) out += buf.data();
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}
#endif

}  // namespace

TEST_CASE("--gptq-device parsing") {
  CHECK(*parse_gptq_device("auto") == GptqDevice::kAuto);
  CHECK(*parse_gptq_device("cpu") == GptqDevice::kCpu);
  CHECK(*parse_gptq_device("gpu") == GptqDevice::kGpu);
  auto bad = parse_gptq_device("tpu");
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find("--gptq-device") != std::string::npos);
  for (auto d : {GptqDevice::kAuto, GptqDevice::kCpu, GptqDevice::kGpu})
    CHECK(*parse_gptq_device(gptq_device_name(d)) == d);
}

TEST_CASE("device choice: auto falls back to the CPU, gpu refuses, cpu is the CPU") {
  // No backend (a build without CUDA).
  auto a = resolve_gptq_device(GptqDevice::kAuto, nullptr, 3);
  REQUIRE(a.ok());
  CHECK(a->device == GptqDevice::kCpu);
  CHECK(a->description.find("3 threads") != std::string::npos);
  CHECK(a->description.find("without CUDA") != std::string::npos);
  auto g = resolve_gptq_device(GptqDevice::kGpu, nullptr, 3);
  REQUIRE(!g.ok());
  CHECK(g.status().message() == "--gptq-device gpu: this qwc was built without CUDA");
  // A backend that finds no device (no driver): the probe's reason is passed on.
  const GpuGptqBackend none = fake_backend(0, "");
  a = resolve_gptq_device(GptqDevice::kAuto, &none, 2);
  REQUIRE(a.ok());
  CHECK(a->device == GptqDevice::kCpu);
  g = resolve_gptq_device(GptqDevice::kGpu, &none, 2);
  REQUIRE(!g.ok());
  CHECK(g.status().message().find("(fake)") != std::string::npos);
  CHECK(g.status().message().find('\n') == std::string::npos);
  // A device: auto and gpu take it, cpu does not.
  const GpuGptqBackend one = fake_backend(1, "Fake GPU 80GB");
  for (auto d : {GptqDevice::kAuto, GptqDevice::kGpu}) {
    auto c = resolve_gptq_device(d, &one, 2);
    REQUIRE(c.ok());
    CHECK(c->device == GptqDevice::kGpu);
    CHECK(c->description.find("Fake GPU 80GB") != std::string::npos);
  }
  auto c = resolve_gptq_device(GptqDevice::kCpu, &one, 2);
  REQUIRE(c.ok());
  CHECK(c->device == GptqDevice::kCpu);
}

TEST_CASE("compile: --gptq-device gpu without a GPU is refused before any output") {
  const auto dir = testing::scratch_dir("gptq_device_refused");
  CompileOptions o = tiny_gptq((dir / "m.qwart").string());
  o.gptq_device = GptqDevice::kGpu;
  const GpuGptqBackend none = fake_backend(0, "");
  for (const GpuGptqBackend* b : {static_cast<const GpuGptqBackend*>(nullptr), &none}) {
    o.gptq_gpu = b;
    auto r = compile_checkpoint(o);
    REQUIRE(!r.ok());
    CHECK(r.status().message().rfind("--gptq-device gpu: ", 0) == 0);
    CHECK(!std::filesystem::exists(o.output));
  }
  // RTN never needs a GPU.
  o.calib_builtin = false;
  o.rtn = true;
  o.gptq_gpu = nullptr;
  auto r = compile_checkpoint(o);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  CHECK(r->gptq_device.empty());
}

TEST_CASE(
    "compile: GPTQ goes to the GPU backend when it finds a device, and the artifact says so") {
  const auto dir = testing::scratch_dir("gptq_device_dispatch");
  int calls = 0;
  const GpuGptqBackend one = fake_backend(1, "Fake GPU", &calls);
  CompileOptions o = tiny_gptq((dir / "gpu.qwart").string());
  o.gptq_gpu = &one;
  auto r = compile_checkpoint(o);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  CHECK(calls == 1);
  CHECK(r->gptq_device == "gpu");
  auto a = Artifact::open(o.output);
  REQUIRE(a.ok());
  CHECK(a->metadata().provenance()->command_line()->str().find("--gptq-device gpu") !=
        std::string::npos);
  // --gptq-device cpu keeps the CPU and the command line it always had.
  o.output = (dir / "cpu.qwart").string();
  o.gptq_device = GptqDevice::kCpu;
  r = compile_checkpoint(o);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  CHECK(calls == 1);
  CHECK(r->gptq_device == "cpu");
  auto b = Artifact::open(o.output);
  REQUIRE(b.ok());
  CHECK(b->metadata().provenance()->command_line()->str().find("--gptq-device") ==
        std::string::npos);
}

TEST_CASE("compile: --quality-report hands the GPU backend the split and says gpu") {
  const auto dir = testing::scratch_dir("gptq_device_quality");
  size_t calib = 0, heldout = 0;
  bool report = false;
  GpuGptqBackend one = fake_backend(1, "Fake GPU");
  one.quantize_model = [&](const ModelConfig& c, const Checkpoint& ck,
                           const ModelQuantizeOptions& o) {
    calib = o.calibration.size();
    heldout = o.heldout.size();
    report = o.quality != nullptr;
    return quantize_model(c, ck, o);
  };
  CompileOptions o = tiny_gptq((dir / "gpu.qwart").string());
  o.gptq_gpu = &one;
  o.quality_report = (dir / "quality.json").string();
  auto r = compile_checkpoint(o);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  CHECK(r->gptq_device == "gpu");
  CHECK(report);
  CHECK(heldout == 1);  // 256 tokens in sequences of 128: the last is held out
  CHECK(calib == 1);
  std::ifstream in(o.quality_report);
  REQUIRE(in.good());
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  CHECK(text.find("\"device\": \"gpu\"") != std::string::npos);
  CHECK(r->quality_summary.rfind("quality: GPTQ <= RTN on ", 0) == 0);
}

TEST_CASE("host pieces shared with the GPU path") {
  std::vector<double> diag = {2.0, 0.0, 5.0, 2.0, 0.0, 7.0};
  std::vector<uint8_t> dead;
  fix_dead_diagonal(diag, dead);
  CHECK(diag == std::vector<double>{2.0, 1.0, 5.0, 2.0, 1.0, 7.0});
  CHECK(dead == std::vector<uint8_t>{0, 1, 0, 0, 1, 0});
  CHECK(gptq_column_order(diag, false) == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  // Decreasing diagonal, ties in index order (stable).
  const auto perm = gptq_column_order(diag, true);
  CHECK(perm == std::vector<int64_t>{5, 2, 0, 3, 1, 4});
  CHECK(mean_permuted_diagonal(diag, perm) == doctest::Approx(18.0 / 6.0));
  CHECK(gptq_group_index(perm, 2) == std::vector<int32_t>{1, 2, 0, 1, 2, 0});
  QuantizeSettings s;
  s.group_size = 32;
  CHECK(check_quantize_shape(16, 64, s).ok());
  CHECK(!check_quantize_shape(12, 64, s).ok());
  CHECK(!check_quantize_shape(16, 48, s).ok());
}

TEST_CASE("dead inputs: weight fixed to zero, like AutoGPTQ") {
  const int64_t n = 8, k = 32, t = 64;
  std::vector<float> w(size_t(n * k)), x(size_t(t * k));
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(int(i * 7919 % 23) - 11) / 20.0f;
  for (int64_t i = 0; i < t; ++i)
    for (int64_t c = 0; c < k; ++c)
      x[size_t(i * k + c)] = c == 3 ? 0.0f : float((i * 31 + c * 17) % 13) - 6.0f;
  Hessian h(k);
  h.add(x.data(), t, 1);
  QuantizeSettings s;
  s.group_size = 32;
  s.sym = false;
  auto q = quantize_gptq(w.data(), n, k, h, s);
  REQUIRE_MESSAGE(q.ok(), q.status().message());
  for (int64_t r = 0; r < n; ++r) CHECK(q->value(r, 3) == 0.0f);
}

#ifdef QW_HAVE_GPTQ_GPU
TEST_CASE("qwc without a GPU: --gptq-device gpu is one error line, auto quantizes on the CPU") {
  const GpuProbe p = gpu::probe_gpu();
  if (p.devices > 0) {
    MESSAGE("this machine has a GPU (" << p.name << "): the no-GPU paths are not testable here");
    return;
  }
  CHECK(!p.reason.empty());
  const auto dir = testing::scratch_dir("gptq_device_cli");
  const std::string qwc = std::string(QW_BINARY_DIR) + "/compiler/qwc";
  const std::string base =
      qwc + " compile " + testing::tiny_checkpoint() + " --dtype int4-gptq --calib-builtin ";
  auto [rc, out] = run(base + "-o " + (dir / "gpu.qwart").string() + " --gptq-device gpu");
  CHECK(rc != 0);
  CHECK(out.rfind("qwc: error: --gptq-device gpu: ", 0) == 0);
  CHECK(out.find('\n') == out.size() - 1);  // one line
  CHECK(!std::filesystem::exists(dir / "gpu.qwart"));
  std::tie(rc, out) = run(base + "-o " + (dir / "auto.qwart").string() + " --gptq-device auto");
  CHECK_MESSAGE(rc == 0, out);
  CHECK(out.find("qwc: GPTQ on the CPU") != std::string::npos);
  std::tie(rc, out) = run(base + "-o " + (dir / "bad.qwart").string() + " --gptq-device tpu");
  CHECK(rc != 0);
  CHECK(out.find("--gptq-device") != std::string::npos);
}
#endif

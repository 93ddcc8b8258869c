// The INT4 kernels through the real compile path, no GPU needed: `qwc compile --dtype
// int4-gptq --arch sm_80,sm_90a` of the tiny model puts NVRTC-built images holding the INT4
// kernels into the artifact, and the runtime's NVRTC fallback, reading the group sizes back
// from the artifact, rebuilds exactly the same source (same kernel key).
#include <doctest/doctest.h>

#include <string>

#include "compiler/kernel_compiler.h"
#include "quant/int4_artifact.h"
#include "tests/quant/quant_test_support.h"

using namespace qw;
using namespace qw::testing;

namespace {

const char* const kInt4Kernels[] = {
    "gemv_int4_qkv_m8",      "gemv_int4_qkv_m16",           "gemv_int4_o_res_m8",
    "gemv_int4_o_res_m16",   "gemv_int4_gate_up_swiglu_m8", "gemv_int4_gate_up_swiglu_m16",
    "gemv_int4_down_res_m8", "gemv_int4_down_res_m16",      "int4_dequant_f16"};

Expected<CompileReport> compile_with_kernels(const std::string& out, int tp, int group_size) {
  CompileOptions o;
  o.checkpoint_dir = tiny_checkpoint();
  o.output = out;
  o.tp = tp;
  o.threads = 2;
  o.int4 = true;
  o.rtn = true;
  o.group_size = group_size;
  o.archs = {"sm_80", "sm_90a"};
  o.kernel_builder = qw::compile_kernels;  // what qwc_main plugs in
  return compile_checkpoint(o);
}

}  // namespace

TEST_CASE("FP16 kernel source is unchanged by the INT4 templates") {
  ModelConfig c;
  c.hidden_size = 128, c.intermediate_size = 384, c.head_dim = 32, c.vocab_size = 1000;
  c.num_attention_heads = 4, c.num_key_value_heads = 2, c.rms_norm_eps = 1e-6;
  auto plan = make_tp_plan(c, 1);
  REQUIRE(plan.ok());
  const std::string fp16 = kernel_source(c, *plan, DType::F16);
  CHECK(fp16.find("gemv_int4") == std::string::npos);
  CHECK(fp16.find("QW_INT4") == std::string::npos);
  CHECK(fp16.find("kInt4Group") == std::string::npos);
  const Int4KernelConstants k = int4_kernel_constants_for(c, *plan, 128);
  const std::string int4 = kernel_source(c, *plan, DType::F16, &k);
  CHECK(int4.find("constexpr int kInt4GroupDown = 128;") != std::string::npos);
  CHECK(int4.find("QW4_GEMM_INST(gemv_int4_qkv") != std::string::npos);
  // Bad geometry is refused before NVRTC runs.
  Int4KernelConstants bad = k;
  bad.group_down = 48;  // a multiple of 16 dividing 384: fine
  CHECK(check_kernel_config(c, *plan, DType::F16, &bad).ok());
  bad.group_down = 40;
  CHECK(!check_kernel_config(c, *plan, DType::F16, &bad).ok());
  CHECK(!check_kernel_config(c, *plan, DType::BF16, &k).ok());
  // Group size -1 / = K: each matrix's own K (o_proj at --tp 2 keeps half the inputs).
  auto plan2 = make_tp_plan(c, 2);
  REQUIRE(plan2.ok());
  const Int4KernelConstants g1 = int4_kernel_constants_for(c, *plan2, -1);
  CHECK(g1.group_qkv == 128);
  CHECK(g1.group_o == 64);
  CHECK(g1.group_gate_up == 128);
  CHECK(g1.group_down == 192);
}

TEST_CASE("qwc compile --dtype int4-gptq --arch sm_80,sm_90a builds the INT4 kernels (NVRTC)") {
  const auto dir = scratch_dir("int4_kernels");
  for (int tp : {1, 2}) {
    CAPTURE(tp);
    const std::string out = (dir / ("tiny_int4_tp" + std::to_string(tp) + ".qwart")).string();
    auto rep = compile_with_kernels(out, tp, tp == 1 ? 64 : -1);
    REQUIRE_MESSAGE(rep.ok(), rep.status().message());
    auto a = Artifact::open(out);
    REQUIRE_MESSAGE(a.ok(), a.status().message());
    auto k = quant::int4_kernel_constants(*a);
    REQUIRE_MESSAGE(k.ok(), k.status().message());
    REQUIRE(k->has_value());
    const Int4KernelConstants want =
        int4_kernel_constants_for(a->config(), a->tp_plan(), tp == 1 ? 64 : -1);
    CHECK(**k == want);
    // The images were built from the source the runtime rebuilds from the artifact.
    const std::string source = kernel_source(a->config(), a->tp_plan(), a->weight_dtype(), &**k);
    auto blob = a->section_payload(fb::SectionKind::Kernels);
    REQUIRE_MESSAGE(blob.ok(), blob.status().message());
    const auto* images = a->metadata().kernels();
    REQUIRE(images != nullptr);
    int seen = 0;
    for (const fb::KernelImage* im : *images) {
      const std::string arch = im->arch()->str(), format = im->format()->str();
      CAPTURE(arch);
      CHECK(im->key()->str() == kernel_key(source, arch, format));
      REQUIRE(im->offset() + im->size() <= blob->size());
      // Kernel names are in the cubin's symbol table and the PTX text.
      const std::string bytes(reinterpret_cast<const char*>(blob->data() + im->offset()),
                              size_t(im->size()));
      for (const char* name : kInt4Kernels)
        CHECK_MESSAGE(bytes.find(name) != std::string::npos, name);
      ++seen;
    }
    CHECK(seen == 3);  // sm_80, sm_90a cubins + compute_80 PTX
  }
}

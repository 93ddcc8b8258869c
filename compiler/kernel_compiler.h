// Instantiates kernels_templates/ with a model's constants and compiles them with NVRTC
// (no GPU needed): one cubin per requested arch plus one PTX for the lowest arch. The GPU
// runtime uses the same functions for its run-time fallback (NVRTC + on-disk cache).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/compile_pipeline.h"
#include "core/dtype.h"
#include "core/model_config.h"
#include "core/status.h"
#include "quant/int4_kernel_constants.h"

namespace qw {

inline constexpr const char* kKernelModuleName = "qwen2";
// Tokens per paged-KV block; the attention kernel assumes one block per warp iteration.
inline constexpr int kKvBlockTokens = 32;

// KernelBundle {blob, images} and KernelImageRecord {module, arch, format, key, offset,
// size} are the artifact writer's types (compile_pipeline.h), so that
// `CompileOptions::kernel_builder = qw::compile_kernels` plugs in directly. KernelImageInfo
// is the same record on the read side.
using KernelImageInfo = KernelImageRecord;

// archs: "sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", ... (at least one). Compiles the
// archs in parallel. Fails naming the arch and with NVRTC's log on a compile error.
// int4: null for FP16/BF16 artifacts; for INT4 ones (weight_dtype F16) the group sizes,
// which add gemv_int4.cuh's kernels (docs/int4_kernels.md) to the module.
Expected<KernelBundle> compile_kernels(const ModelConfig& config, const TpPlan& plan,
                                       DType weight_dtype, const std::vector<std::string>& archs,
                                       const Int4KernelConstants* int4 = nullptr);

// ---- lower level (shared with the runtime) ----
// `namespace qwc { constexpr ... }` + QW_WEIGHT_BF16 for this model and rank plan.
// With int4: also `#define QW_INT4 1` and qwc::kInt4Group{Qkv,O,GateUp,Down}. Without, the
// text is exactly what it was before INT4 kernels existed (FP16 kernel keys are unchanged).
Status check_kernel_config(const ModelConfig& config, const TpPlan& plan, DType weight_dtype,
                           const Int4KernelConstants* int4 = nullptr);
std::string kernel_prelude(const ModelConfig& config, const TpPlan& plan, DType weight_dtype,
                           const Int4KernelConstants* int4 = nullptr);
// Prelude + every template, in order: the whole translation unit NVRTC compiles. The INT4
// templates (int4_index.cuh, gemv_int4.cuh) are included only with int4.
std::string kernel_source(const ModelConfig& config, const TpPlan& plan, DType weight_dtype,
                          const Int4KernelConstants* int4 = nullptr);
// "13.0" etc.; "none" when built without NVRTC.
std::string nvrtc_version_string();
// 16 hex digits.
std::string kernel_key(const std::string& source, const std::string& arch, const std::string& format);
// arch "sm_XX[a]" -> cubin; "compute_XX[a]" -> PTX (NUL-terminated text).
Expected<std::vector<uint8_t>> nvrtc_compile(const std::string& source, const std::string& arch);
// Parses "sm_90a" / "compute_80" into (90, true) etc.
bool parse_arch(const std::string& arch, int* cc, bool* arch_specific, bool* is_ptx);

}  // namespace qw

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
Expected<KernelBundle> compile_kernels(const ModelConfig& config, const TpPlan& plan,
                                       DType weight_dtype, const std::vector<std::string>& archs);

// ---- lower level (shared with the runtime) ----
// `namespace qwc { constexpr ... }` + QW_WEIGHT_BF16 for this model and rank plan.
Status check_kernel_config(const ModelConfig& config, const TpPlan& plan, DType weight_dtype);
std::string kernel_prelude(const ModelConfig& config, const TpPlan& plan, DType weight_dtype);
// Prelude + every template, in order: the whole translation unit NVRTC compiles.
std::string kernel_source(const ModelConfig& config, const TpPlan& plan, DType weight_dtype);
// "13.0" etc.; "none" when built without NVRTC.
std::string nvrtc_version_string();
// 16 hex digits.
std::string kernel_key(const std::string& source, const std::string& arch, const std::string& format);
// arch "sm_XX[a]" -> cubin; "compute_XX[a]" -> PTX (NUL-terminated text).
Expected<std::vector<uint8_t>> nvrtc_compile(const std::string& source, const std::string& arch);
// Parses "sm_90a" / "compute_80" into (90, true) etc.
bool parse_arch(const std::string& arch, int* cc, bool* arch_specific, bool* is_ptx);

}  // namespace qw

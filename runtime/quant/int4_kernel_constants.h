// Compile-time constants of the GPU INT4 kernels (kernels_templates/gemv_int4.cuh) for one
// artifact: the input features per scale group of each quantized matrix of a rank (a
// one-group matrix, GPTQ group_size -1, has group = its K). qwc emits them into the kernel
// prelude; the runtime reads them back from the artifact (quant::int4_kernel_constants) so
// its NVRTC fallback builds the same source.
#pragma once
#include "core/model_config.h"

namespace qw {

struct Int4KernelConstants {
  int group_qkv = 0;      // K = hidden
  int group_o = 0;        // K = q heads per rank * head_dim
  int group_gate_up = 0;  // K = hidden
  int group_down = 0;     // K = intermediate per rank

  bool operator==(const Int4KernelConstants&) const = default;
};

// The constants qwc's INT4 emitter produces for a GPTQ group size (-1: one group): a rank
// whose matrix keeps every input feature of a group-per-row weight gets group = its own K
// (compiler/gptq/int4_emitter.cpp), otherwise the checkpoint's group size.
inline Int4KernelConstants int4_kernel_constants_for(const ModelConfig& c, const TpPlan& p,
                                                     int group_size) {
  auto eff = [&](int64_t full_in, int64_t rank_in) {
    return int(group_size <= 0 || group_size >= full_in ? rank_in : group_size);
  };
  Int4KernelConstants k;
  k.group_qkv = eff(c.hidden_size, c.hidden_size);
  k.group_o = eff(c.q_dim(), p.q_heads_per_rank * c.head_dim);
  k.group_gate_up = eff(c.hidden_size, c.hidden_size);
  k.group_down = eff(c.intermediate_size, p.intermediate_per_rank);
  return k;
}

}  // namespace qw

// Rotary position embedding parameters, computed from the model config exactly as
// transformers does for Qwen2 (modeling_rope_utils): fp32 inverse frequencies and an
// attention scaling that multiplies cos/sin (YaRN's mscale; 1 otherwise).
#pragma once
#include <cstdint>
#include <vector>

#include "core/model_config.h"
#include "core/status.h"

namespace qw::cpu {

struct RopeParams {
  std::vector<float> inv_freq;  // head_dim / 2 entries
  float attention_scaling = 1.0f;
  int64_t head_dim = 0;
};

// Supports rope_type "" / "default" (plain), "linear", "dynamic" (equal to plain for
// positions below max_position_embeddings, the only ones the runtime accepts) and "yarn".
Expected<RopeParams> compute_rope_params(const ModelConfig& cfg);

// cos/sin of every frequency at `pos`, already multiplied by attention_scaling, rounded
// as transformers rounds them (fp32 angle = fp32(inv_freq) * fp32(pos)).
void rope_cos_sin(const RopeParams& p, int64_t pos, float* cos_out, float* sin_out);

// Rotates `heads` consecutive vectors of head_dim floats in place (HF's rotate_half
// convention: element j pairs with j + head_dim/2).
void apply_rope(float* v, int64_t heads, int64_t head_dim, const float* cos, const float* sin);

}  // namespace qw::cpu

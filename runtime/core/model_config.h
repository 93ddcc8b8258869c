// The Qwen2 model configuration as the runtime needs it. Filled from config.json by the
// compiler and from the artifact metadata by the runtime; never from constants in code.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace qw {

struct RopeScalingConfig {
  std::string rope_type;  // "" = plain RoPE; "yarn", "linear", "dynamic"
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double attention_factor = 0.0;  // 0 = derived from factor as transformers does
  bool truncate = true;
};

struct ModelConfig {
  std::string architecture = "Qwen2ForCausalLM";
  std::string model_type = "qwen2";
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScalingConfig rope_scaling;
  bool tie_word_embeddings = false;
  bool use_sliding_window = false;
  int64_t sliding_window = 0;
  int64_t max_window_layers = 0;
  std::string hidden_act = "silu";
  std::string source_torch_dtype;
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = -1;

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
};

struct GenerationDefaults {
  bool do_sample = false;
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  double repetition_penalty = 1.0;
  int64_t max_new_tokens = 0;
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = -1;
};

// How heads are distributed over tensor-parallel ranks. KV heads are replicated when
// tp > num_key_value_heads (each rank then holds one KV head shared by its q heads).
struct TpPlan {
  int64_t tp = 1;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t q_heads_per_rank = 0;
  int64_t kv_heads_per_rank = 0;
  int64_t intermediate_per_rank = 0;
  int64_t vocab_per_rank = 0;  // lm_head rows per rank (vocab_size / tp, rounded up)
  // First (global) KV head held by `rank`; its q heads all map into its KV heads.
  int64_t kv_head_begin(int64_t rank) const { return rank * num_kv_heads / tp; }
  int64_t q_head_begin(int64_t rank) const { return rank * q_heads_per_rank; }
  int64_t qkv_rows_per_rank(int64_t head_dim) const {
    return (q_heads_per_rank + 2 * kv_heads_per_rank) * head_dim;
  }
};

// Validates divisibility (heads, kv heads, intermediate size by tp) and builds the plan.
Expected<TpPlan> make_tp_plan(const ModelConfig& config, int64_t tp);

}  // namespace qw

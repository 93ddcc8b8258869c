// Views of every weight the Qwen2 forward reads, per tensor-parallel rank, in the
// artifact's layouts (runtime/artifact/tensor_names.h). Large matrices stay in the
// mapping; only the small 1-D vectors (norms, biases) are converted to fp32 here.
#pragma once
#include <cstdint>
#include <vector>

#include "core/model_config.h"
#include "core/status.h"
#include "cpu/weight_matrix.h"

namespace qw {
class Artifact;
}

namespace qw::cpu {

struct RankLayerWeights {
  WeightMatrix qkv;             // FusedQKV [(qh_r + 2 kvh_r) * head_dim, hidden]
  std::vector<float> qkv_bias;  // [(qh_r + 2 kvh_r) * head_dim]
  WeightMatrix o_proj;          // row-parallel [hidden, qh_r * head_dim]
  WeightMatrix gate_up;         // FusedGateUp [2 * inter_r, hidden]
  WeightMatrix down;            // row-parallel [hidden, inter_r]
};

struct LayerWeights {
  std::vector<float> input_norm;  // [hidden]
  std::vector<float> post_norm;   // [hidden]
  std::vector<RankLayerWeights> ranks;
};

struct ModelWeights {
  WeightMatrix embed;                 // [vocab, hidden] (rank 0's copy)
  std::vector<float> final_norm;      // [hidden]
  std::vector<WeightMatrix> lm_head;  // per rank [vocab_r, hidden]; the embedding when tied at tp 1
  std::vector<LayerWeights> layers;
};

// Checks every shape and dtype against the config and plan; names the first bad tensor.
Status validate_weights(const ModelConfig& cfg, const TpPlan& plan, const ModelWeights& w);

// Builds the views for every rank of an artifact (which must outlive them).
Expected<ModelWeights> weights_from_artifact(const Artifact& art);

}  // namespace qw::cpu

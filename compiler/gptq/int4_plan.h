// Per-rank tensor plan of an INT4 artifact: the same tensors, names, fusions and TP splits as
// the FP16 plan (compiler/tp_partition.h), with the four linear weights of every layer
// (fused QKV, o_proj, fused gate/up, down) taken from GPTQ tensors instead of ".weight".
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/tp_partition.h"

namespace qw::gptq {

// Output rows [row_begin, row_begin + row_count) of GPTQ layer `base` (base.qweight ...).
struct QuantPiece {
  std::string base;
  int64_t row_begin = 0, row_count = 0;
  int64_t src_rows = 0;  // the source layer's out features
};

struct QuantTensorPlan {
  std::string name;  // artifact name, e.g. model.layers.3.self_attn.qkv_proj.weight
  fb::Layout layout = fb::Layout::Plain;
  fb::TpSplit tp_split = fb::TpSplit::Replicated;
  std::vector<QuantPiece> pieces;  // stacked by rows
  int64_t src_cols = 0;            // the sources' in features
  int64_t col_begin = 0, col_count = 0;  // this rank's input features
  int64_t rows() const {
    int64_t n = 0;
    for (const auto& p : pieces) n += p.row_count;
    return n;
  }
};

struct Int4Entry {
  bool quantized = false;
  OutputTensorPlan plain;  // when !quantized (converted to the artifact's fp dtype)
  QuantTensorPlan quant;   // when quantized
};

// `fp` holds the unquantized tensors (embeddings, norms, biases, lm_head), `q` the GPTQ
// tensors; they may be the same checkpoint. Shapes are checked; messages name the tensor.
Expected<std::vector<std::vector<Int4Entry>>> plan_int4_partition(const ModelConfig& config,
                                                                 const TpPlan& plan,
                                                                 const Checkpoint& fp,
                                                                 const Checkpoint& q);

}  // namespace qw::gptq

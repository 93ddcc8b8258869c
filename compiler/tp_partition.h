// Plans the artifact's tensors for each tensor-parallel rank from HF's tensors: fused QKV
// (+bias) and gate/up, column-parallel q/k/v/gate/up/lm_head, row-parallel o/down,
// replicated norms and embeddings. Pure planning: no bytes are touched here.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/safetensors_reader.h"
#include "core/model_config.h"
#include "qw_schema/artifact_generated.h"

namespace qw {

// Rows [row_begin, row_begin+row_count) and columns [col_begin, col_begin+col_count) of a
// 2-D source tensor (a 1-D tensor is a single column). Pieces are stacked by rows.
struct SourceSlice {
  std::string source;
  int64_t row_begin = 0, row_count = 0;
  int64_t col_begin = 0, col_count = 0;
};

struct OutputTensorPlan {
  std::string name;
  std::vector<int64_t> shape;
  fb::Layout layout = fb::Layout::Plain;
  fb::TpSplit tp_split = fb::TpSplit::Replicated;
  std::vector<SourceSlice> pieces;
  int64_t zero_rows = 0;  // rows of zeros after the pieces (vocab padding of the last rank)
  int64_t row_elems() const { return shape.size() < 2 ? 1 : shape[1]; }
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
};

// One list per rank. Checks every source tensor exists with the shape config implies.
Expected<std::vector<std::vector<OutputTensorPlan>>> plan_partition(const ModelConfig& config,
                                                                    const TpPlan& plan,
                                                                    const Checkpoint& ckpt);

}  // namespace qw

// Writes one planned INT4 tensor of one rank into the artifact: reads its GPTQ pieces,
// applies the rank's input slice (refusing groups that straddle ranks) and the act-order
// permutation, and emits the packed weight (qw-int4-m16x64-v1), its fp16 scales, its zero
// points when not symmetric, and its input permutation when act-ordered.
#pragma once
#include <cstdint>

#include "compiler/artifact_writer.h"
#include "compiler/gptq/int4_plan.h"
#include "compiler/gptq/quant_config.h"
#include "core/progress.h"

namespace qw::gptq {

class Int4Emitter {
 public:
  Int4Emitter(const Checkpoint& q, const GptqConfig& cfg, ArtifactWriter& w)
      : q_(q), cfg_(cfg), w_(w) {}

  Status emit(const QuantTensorPlan& t, int rank, int tp, uint32_t section, ProgressBar& bar,
              uint64_t& bytes_read);

  // Bytes the tensor takes in the artifact (for the progress total), before alignment.
  static uint64_t approx_bytes(const QuantTensorPlan& t);

 private:
  const Checkpoint& q_;
  const GptqConfig& cfg_;
  ArtifactWriter& w_;
};

}  // namespace qw::gptq

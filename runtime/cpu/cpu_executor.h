// The CPU reference backend: the full Qwen2 forward in fp32 over weights read in place
// from the artifact mapping. Tensor-parallel artifacts run rank by rank; the partial
// outputs of the row-parallel o_proj / down_proj are summed in rank order, as the
// all-reduce of a TP GPU run does, so no weight is ever reassembled.
// Not thread-safe: one step() at a time (matmuls and attention use its own thread pool).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/model_config.h"
#include "cpu/kv_cache.h"
#include "cpu/model_weights.h"
#include "cpu/rope.h"
#include "core/thread_pool.h"
#include "engine/executor.h"

namespace qw {
class Artifact;
}

namespace qw::cpu {

struct CpuExecutorOptions {
  int threads = 0;                 // 0: all hardware threads
  int64_t kv_block_tokens = 16;    // positions per KV block
  int64_t kv_capacity_tokens = 0;  // 0: max_position_embeddings (allocated lazily)
  bool prefix_caching = true;      // reuse the KV of full blocks of earlier prompts
  // step_reduced() hands rows to the sampler as candidates (engine/candidates.h), as the
  // GPU does, so tests exercise that path on the CPU.
  bool reduce_rows_on_host = false;
};

class CpuExecutor final : public ModelExecutor {
 public:
  // The artifact must outlive the executor (weights are views into its mapping).
  static Expected<std::unique_ptr<CpuExecutor>> create(const Artifact& art,
                                                       CpuExecutorOptions opts = {});
  // From explicit weights (tests build them in memory); the buffers must outlive it.
  static Expected<std::unique_ptr<CpuExecutor>> create(const ModelConfig& cfg, const TpPlan& plan,
                                                       ModelWeights weights,
                                                       CpuExecutorOptions opts = {});

  const ModelConfig& config() const override { return cfg_; }
  std::string device_name() const override;
  Status step(std::span<const StepInput> inputs, std::vector<float>& logits) override;
  int64_t attach_prefix(SeqId seq, std::span<const int32_t> tokens) override;
  void release(SeqId seq) override { cache_.blocks().release(seq); }
  bool can_append(SeqId seq, int64_t n) const override;
  KvUsage kv_usage() const override;
  int64_t max_context() const override { return max_context_; }

  const RopeParams& rope() const { return rope_; }

 private:
  CpuExecutor(const ModelConfig& cfg, const TpPlan& plan, ModelWeights weights, RopeParams rope,
              CpuExecutorOptions opts);
  Status check_inputs(std::span<const StepInput> inputs) const;

  ModelConfig cfg_;
  TpPlan plan_;
  ModelWeights w_;
  RopeParams rope_;
  ThreadPool pool_;
  KvCache cache_;
  int64_t max_context_ = 0;
};

}  // namespace qw::cpu

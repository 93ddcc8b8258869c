// Tensor parallelism over the GPUs of this host: one GpuExecutor per rank, each on its own
// GPU with its own weight section, KV pool and decode graphs, stepping in lockstep. Each
// rank's forward sums its row-parallel projections with NCCL all-reduces (inside the
// decode graphs too); the lm_head is split by vocabulary and the rows are put together
// here. Every rank runs the same KvBlockManager calls, so block tables agree.
#pragma once
#include <memory>
#include <vector>

#include "core/thread_pool.h"
#include "gpu/gpu_executor.h"
#include "gpu/nccl_api.h"

namespace qw::gpu {

class TpGpuExecutor final : public ModelExecutor {
 public:
  // Ranks go to GPUs first_device .. first_device + tp - 1 (tp = the artifact's degree).
  static Expected<std::unique_ptr<TpGpuExecutor>> create(std::shared_ptr<const Artifact> artifact,
                                                         const GpuExecutorOptions& opts);
  ~TpGpuExecutor() override;

  const ModelConfig& config() const override { return ranks_[0]->config(); }
  std::string device_name() const override;
  Status step(std::span<const StepInput> inputs, std::vector<float>& logits) override;
  int64_t attach_prefix(SeqId seq, std::span<const int32_t> tokens) override;
  void release(SeqId seq) override;
  bool can_append(SeqId seq, int64_t n) const override { return ranks_[0]->can_append(seq, n); }
  KvUsage kv_usage() const override { return ranks_[0]->kv_usage(); }
  int64_t max_context() const override { return max_context_; }

  int tp() const { return int(ranks_.size()); }
  GpuExecutor& rank(int r) { return *ranks_[size_t(r)]; }
  // Seconds from the start of create() until every rank was ready.
  double startup_seconds() const { return startup_s_; }

 private:
  TpGpuExecutor() = default;
  NcclComms comms_;
  std::vector<std::unique_ptr<GpuExecutor>> ranks_;
  std::unique_ptr<ThreadPool> pool_;  // one thread per rank: their NCCL calls must overlap
  std::vector<std::vector<float>> rank_logits_;
  int64_t max_context_ = 0;
  double startup_s_ = 0;
};

}  // namespace qw::gpu

// Sampling on the device, GPU half: reduces logits rows still on the GPU to the candidates
// of their CandidateRequests (kernels_templates/sampling.cuh), so ~0.5 KB per row crosses
// to the host instead of the vocabulary (600 KB). Greedy rows (k == 1, no penalties) take a
// many-blocks-per-row kernel: the one-block kernel's ~60 us would be a fixed cost of every
// greedy decode step. Owns the kernel's scratch rows and the
// argument/result buffers (pinned on the host, mirrored on the device).
#pragma once
#include <cuda_runtime.h>

#include <span>
#include <vector>

#include "engine/candidates.h"
#include "gpu/cuda_util.h"
#include "gpu/kernel_module.h"

namespace qw::gpu {

class DeviceRowReducer {
 public:
  // max_rows rows of `stride` floats each may be reduced in one call.
  static Expected<DeviceRowReducer> create(const KernelModule& module, int64_t max_rows,
                                           int64_t stride);

  // For each j: row logit_rows[j] of `logits` (stride floats apart, `columns` used) reduced
  // per requests[j] into out[j] (complete == false where ties overflowed: the caller
  // fetches that row). Synchronises `s`.
  Status reduce(cudaStream_t s, const float* logits, int64_t columns,
                std::span<const int> logit_rows, std::span<const CandidateRequest> requests,
                std::span<RowCandidates* const> out);

  uint64_t scratch_bytes() const { return scratch_.size(); }

 private:
  Status reserve_penalties(size_t n);

  cudaKernel_t kernel_{};
  cudaKernel_t greedy_kernel_{};  // null for artifacts built before it existed
  int64_t max_rows_ = 0, stride_ = 0;
  DeviceBuffer greedy_parts_, greedy_counters_;  // per (row, slice) partials; per-row arrivals
  DeviceBuffer scratch_;                         // max_rows processed rows
  DeviceBuffer rows_dev_, out_dev_, pen_dev_;
  PinnedBuffer rows_host_, out_host_, pen_host_;
  size_t pen_capacity_ = 0;
};

}  // namespace qw::gpu

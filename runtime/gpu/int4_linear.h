// The INT4 (GPTQ, qw-int4-m16x64-v1) projections of a GPU executor: the four quantized
// matrices of every layer bound to their device copies (packed words, scales, zeros, act-order
// permutation: all in the weights arena), the tensor-core decode GEMMs of
// kernels_templates/gemv_int4.cuh for up to kMaxDirectRows rows (launches of 8 or 16 rows),
// and dequantization to a dense fp16 scratch matrix for longer passes, which the executor
// then multiplies with cuBLAS.
#pragma once
#include <cuda_runtime.h>

#include <vector>

#include "artifact/artifact.h"
#include "core/status.h"
#include "gpu/cuda_util.h"
#include "gpu/kernel_module.h"
#include "gpu/weight_loader.h"

namespace qw::gpu {

enum class Int4Proj { Qkv = 0, ORes = 1, GateUpSwiglu = 2, DownRes = 3 };

class Int4Linear {
 public:
  // Rows above this go through dequantize() + cuBLAS. Measured on the H100 (7b, g128, split-K
  // kernels): 16 rows take 5.0 ms per decode step through the GEMMs; 32 and 64 rows through
  // dequantization + cuBLAS 14.3 and 14.7 ms (rewriting every matrix as fp16 each step). Two
  // launches of 16 rows (~10 ms) beat that at 32; four (~20 ms) lose at 64.
  static constexpr int kMaxDirectRows = 32;

  // Binds every layer's quantized weights of `tp_rank` (fails naming the tensor when one is
  // missing, unquantized or not in the weights section) and allocates the kernels' workspace.
  static Expected<Int4Linear> create(const Artifact& artifact, int tp_rank,
                                     const DeviceWeights& weights, const KernelModule& module,
                                     int device);

  // The kernels' output convention: Qkv: y = W x (fp32 [rows][N]); ORes / DownRes: y += W x;
  // GateUpSwiglu: yh[r][n] = silu(gate) * up (fp16 [rows][N/2]). x: fp16 [rows][K].
  // rows <= kMaxDirectRows. pdl: launch with programmatic dependent launch (the kernels
  // fetch their first weights before waiting on the previous kernel).
  Status multiply(Int4Proj p, int layer, const void* x, int rows, float* y, void* yh,
                  cudaStream_t stream, bool pdl = false) const;
  // out[n * K + c] = W[n][c] in fp16 (logical input order), for a cuBLAS GEMM.
  Status dequantize(Int4Proj p, int layer, void* out, cudaStream_t stream) const;
  // Elements of the largest matrix (the dequantization scratch the executor allocates).
  size_t max_dense_elements() const { return max_dense_; }
  // Whether a matrix gathers its activations through an act-order permutation (the kernels
  // then read indices from the weights arena).
  bool has_permutation() const {
    for (const Matrix& m : layers_)
      if (m.perm) return true;
    return false;
  }
  uint64_t workspace_bytes() const { return ws_.size() + counters_.size(); }

 private:
  struct Matrix {
    const void* packed = nullptr;
    const void* scales = nullptr;
    const unsigned char* zeros = nullptr;  // null: symmetric (zero_point)
    const int* perm = nullptr;             // null: identity
    int zero_point = 8;
    int rows = 0, cols = 0, padded_rows = 0, group = 0;
    int splits[2] = {1, 1};  // split-K blocks per tile of the m8 / m16 launches
  };
  // qw4_plan_splits for the m8 (mh 1) or m16 (mh 2) kernel, or override_splits when > 0.
  int plan_splits(const Matrix& m, int mh, int override_splits) const;
  const Matrix& matrix(Int4Proj p, int layer) const {
    return layers_[size_t(layer) * 4 + size_t(p)];
  }

  std::vector<Matrix> layers_;  // [layer][proj]
  cudaKernel_t gemm_[4][2]{};   // [proj][m8, m16]
  cudaKernel_t dequant_{};
  int num_sms_ = 0;
  int splits_override_[4] = {};  // per projection, QW_INT4_SPLITS (0: plan)
  size_t max_dense_ = 0;
  DeviceBuffer ws_, counters_;
};

}  // namespace qw::gpu

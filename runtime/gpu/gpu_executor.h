// The GPU backend of ModelExecutor: weights resident in one arena, NVRTC-compiled kernels
// specialised for the model, a paged KV cache (fixed 32-token blocks from one pool, block
// tables per sequence), cuBLAS GEMMs for prefill, tensor-core flash attention for prompt
// chunks, own GEMV kernels for decode (CUDA cores <= gemv_max_rows rows, tensor cores <=
// tc_max_rows, cuBLAS above), and CUDA graphs for decode steps per batch bucket 1..64
// (captured at start).
#pragma once
#include <cuda_runtime.h>
#include <chrono>

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "artifact/artifact.h"
#include "engine/executor.h"
#include "engine/kv_block_manager.h"
#include "gpu/cuda_util.h"
#include "gpu/int4_linear.h"
#include "gpu/kernel_module.h"
#include "gpu/nccl_api.h"
#include "gpu/row_reducer.h"
#include "gpu/weight_loader.h"

namespace qw::gpu {

struct GpuExecutorOptions {
  int device = 0;
  double kv_cache_gb = 0;              // > 0: pool size; 0: kv_memory_fraction of free memory
  double kv_memory_fraction = 0.90;    // of the memory free after weights and workspace
  int64_t max_tokens_per_pass = 2048;  // longer steps run as several passes (chunked prefill)
  int64_t max_logit_rows = 256;        // lm_head rows per launch (all_logits over long chunks)
  bool cuda_graphs = true;             // decode steps replay graphs captured per batch bucket
  int max_graph_batch = 64;            // largest decode bucket captured (1, 2, 4, ..., 64)
  // Decode rows up to this use the own GEMVs, more cuBLAS (0..8). Measured on the H100 (7b,
  // graph replay): own 5.40/5.69/5.90 ms at 1/2/4 rows vs cuBLAS 6.14/6.17/6.21; at 8 rows
  // cuBLAS 6.26 vs own 7.42 (docs/performance.md).
  int gemv_max_rows = 4;
  // Warps per row pair in the decode GEMVs: 0 plans it from the shape (gemv_plan.h), 1/2/4 force
  // it.
  int gemv_warps_per_pair = 0;
  // Decode rows above gemv_max_rows and up to this use the tensor-core decode GEMMs
  // (gemv_tc.cuh), more cuBLAS (0..32). Measured on the H100 (7b, graph replay ms):
  // b8 6.03 vs cuBLAS 6.29; b16 6.49 vs 6.33; b32 8.69 vs 6.35 (docs/performance.md,
  // version 3). So 8.
  int tc_max_rows = 8;
  // Programmatic dependent launch on the GEMV, tensor-core (pdl_tensor_core) and INT4 GEMM
  // paths (sm_90): a kernel's blocks start, and fetch their first weights, while the previous
  // kernel's last wave runs. Measured on the H100 (7b, one process, 2026-11-24 session 10):
  // INT4 decode +6 to +8% at b1-b32 (b1 296.5 vs 275.7 tok/s), FP16 b1 +1.4% (graph replay
  // 5.500 vs 5.576 ms). cuBLAS passes (FP16 above tc_max_rows rows) run without it. Session 2's
  // kernels measured slower with it (docs/performance.md). QW_PDL=0 turns it off.
  bool pdl = true;
  // PDL also for the tensor-core decode GEMMs (gemv_max_rows < rows <= tc_max_rows), which
  // fetch their first weights before the wait too: FP16 b8 +1.3% (H100, session 10).
  // QW_PDL_TC=0 turns it off (A/B).
  bool pdl_tensor_core = true;
  bool flash_attention = true;  // tensor-core attention for passes with prompt chunks
  // Decode passes: one attention_decode launch per layer instead of qkv_rope_kv +
  // attention_paged (+ attention_combine). Off: measured slower on the H100 at the bench's
  // contexts (7b, context 128-384: b1 178.3 vs 180.1 tok/s FP16, 290.9 vs 299.5 INT4; graph
  // replay at context 1 5.318 vs 5.342 ms), see docs/performance.md. QW_FUSED_ATTN=1 for A/B.
  bool fused_decode_attention = false;
  bool prefix_caching = true;  // reuse the KV of full blocks of earlier prompts
  // step_reduced(): penalties, temperature and top-k on the GPU, candidates to the host
  // (the tokens are the same either way; off: whole rows, for comparisons).
  bool device_sampling = true;
  // Tensor parallelism (TpGpuExecutor sets these): this executor is rank `tp_rank` of
  // `tp_size`, on its own GPU, summing its row-parallel partials over `nccl_comm`.
  int tp_rank = 0;
  int tp_size = 1;
  ncclComm_t nccl_comm = nullptr;
  const NcclApi* nccl = nullptr;
  LoadOptions load;
};

struct GpuStartupTimings {
  double weights_alloc_s = 0, weights_copy_s = 0, weights_gbps = 0;
  uint64_t weight_bytes = 0;
  std::string load_method;
  double module_s = 0;
  std::string module_source, module_arch;
  double workspace_s = 0;     // workspace + KV pool allocation (while the weights copy runs)
  double weights_wait_s = 0;  // after that, waiting for the last weight bytes
  uint64_t kv_bytes = 0;
  int64_t kv_blocks = 0;
  double graph_capture_s = 0;
  int graphs = 0;
};

struct GpuMemoryUse {
  uint64_t weights = 0, kv_cache = 0, workspace = 0;
  uint64_t device_used = 0, device_total = 0;  // cudaMemGetInfo: total - free (all users)
};

class GpuExecutor final : public ModelExecutor {
 public:
  static Expected<std::unique_ptr<GpuExecutor>> create(std::shared_ptr<const Artifact> artifact,
                                                       const GpuExecutorOptions& opts);
  ~GpuExecutor() override;

  const ModelConfig& config() const override { return cfg_; }
  std::string device_name() const override { return device_name_; }
  Status step(std::span<const StepInput> inputs, std::vector<float>& logits) override;
  // A decode step replayed from a graph leaves its logits in pinned memory: the view points
  // there instead of copying them (other steps copy as step() does).
  Expected<std::span<const float>> step_view(std::span<const StepInput> inputs) override;
  // Rows with a request are reduced to candidates on the GPU (DeviceRowReducer); only they
  // and the rows that cannot be reduced cross to the host.
  Status step_reduced(std::span<const StepInput> inputs, std::span<const CandidateRequest> requests,
                      StepRows& out) override;
  bool reduces_on_device() const { return reducer_.has_value(); }
  int64_t attach_prefix(SeqId seq, std::span<const int32_t> tokens) override;
  void release(SeqId seq) override;
  bool can_append(SeqId seq, int64_t n) const override;
  KvUsage kv_usage() const override;
  int64_t max_context() const override { return max_context_; }

  const GpuStartupTimings& startup() const { return timings_; }
  bool pdl() const { return pdl_; }
  const DeviceWeights& weights() const { return weights_; }
  const KernelModule& module() const { return module_; }
  cudaStream_t stream() const { return stream_.get(); }
  // Logit columns per row in step()'s output: the vocabulary, or this rank's slice of it.
  int64_t logit_columns() const { return opts_.tp_size > 1 ? vocab_rows_ : cfg_.vocab_size; }
  // Device checksum (checksum64 kernel) of the weights arena; compare host_checksum64.
  Expected<uint64_t> device_weights_checksum();
  GpuMemoryUse memory_use() const;
  // Median milliseconds of `iters` replays of the decode graph of `bucket` rows (padded rows
  // on the scratch block: GPU time of one decode step without the host's part).
  Expected<double> time_graph_replay(int bucket, int iters);
  std::vector<int> graph_buckets() const;

 private:
  GpuExecutor() = default;
  struct LayerW {
    // The four projection weights are null in an INT4 artifact (int4_ has them).
    const void *in_norm, *qkv_w, *qkv_b, *o_w, *post_norm, *gu_w, *down_w;
  };
  struct Piece {
    size_t input;
    int64_t begin, len;
  };
  Status init(std::shared_ptr<const Artifact> artifact, const GpuExecutorOptions& opts);
  // allow_view: a decode pass may leave its logits in logits_host_ (step_view()).
  Status run_step(std::span<const StepInput> inputs, std::vector<float>& logits, bool allow_view);
  Status run_pass(std::span<const StepInput> inputs, const std::vector<Piece>& pieces,
                  std::vector<float>& logits, bool allow_view);
  // ntiles > 0: prefill attention on the tensor cores over the tiles in d_tiles_.
  // decode: every row is one new token of its own sequence (attention_decode may run).
  Status forward(int rows, int nsplit, int ntiles = 0, bool decode = false);
  template <typename... Args>
  Status run_kernel(cudaKernel_t k, dim3 grid, dim3 block, Args... args) {
    return launch_pdl(pdl_now_, k, grid, block, 0, stream_.get(), args...);
  }
  // The logits rows device_rows (rows of logits_) of this pass, in step order: appended to
  // `logits`, or in a step_reduced() reduced where requested.
  Status emit_logits(std::span<const int> device_rows, std::vector<float>& logits);
  Status gemm(const void* a, const void* w, float* c, int rows, int n, int k, bool accumulate);
  // Which kernels multiply the fp16/bf16 matrices of a pass of `rows` rows (lm_head always;
  // the layers' projections unless int4_ holds them).
  enum class DenseKernel { Gemv, TensorCore, Cublas };
  DenseKernel dense_kernel(int rows) const;
  // Whether our fp16/bf16 kernels of that kind launch with PDL (cuBLAS never does).
  bool dense_pdl(DenseKernel dk) const;
  enum TcMatrix { kTcQkv = 0, kTcORes, kTcGateUp, kTcDownRes, kTcLmHead, kTcMatrices };
  // y (or yh for the SwiGLU matrix) for `rows` <= QW_TC_MAX_ROWS activation rows of x.
  Status tc_linear(TcMatrix m, const void* w, const void* x, int rows, float* y, void* yh, int n);
  // A decode GEMV (kernels_templates/gemv.cuh) of kind 0..3 (hidden, o_res, gate_up_swiglu,
  // down_res) over n outputs, warps per row pair planned from the shape (gemv_plan.h).
  Status run_gemv(int kind, int rows, const void* w, const void* x, float* y, void* yh, int n);
  // One projection of layer `l` of an INT4 artifact: the INT4 GEMM kernels up to
  // Int4Linear::kMaxDirectRows rows, dequantization + cuBLAS above (GateUpSwiglu leaves
  // silu(gate) * up in act_ either way).
  Status int4_projection(Int4Proj p, int l, const void* x, int rows, float* y);
  Status lm_head(int first_row, int rows);
  // Row-parallel output of a TP rank: before, ranks other than 0 clear the residual stream
  // (rank 0 keeps it), so after the sum every rank holds residual + all partials.
  Status begin_row_parallel(int rows);
  Status end_row_parallel(int rows);
  Status capture_graphs();
  Status capture_graphs_once();
  int64_t blocks_for(int64_t tokens) const {
    return (tokens + kKvBlockTokens - 1) / kKvBlockTokens;
  }
  void* kcache(int layer) const;
  void* vcache(int layer) const;
  int attention_splits(int rows) const;

  // QW_STEP_TRACE=1: where the wall time of graph-replayed decode steps goes (host
  // preparation, metadata upload + graph on the GPU, logits reduction/copy), printed to
  // stderr when the executor is destroyed. A measurement aid; off costs nothing.
  struct StepTrace {
    bool on = false;
    int steps = 0;
    double prep_us = 0, graph_us = 0, logits_us = 0, wall_us = 0;
    Event ev[3];
    std::chrono::steady_clock::time_point t_entry;
  };
  StepTrace trace_;

  std::shared_ptr<const Artifact> art_;
  GpuExecutorOptions opts_;
  ModelConfig cfg_;
  TpPlan plan_;
  DType dtype_ = DType::F16;
  std::string device_name_;
  int device_ = 0;
  int sms_ = 1;  // streaming multiprocessors (GEMV launch planning)
  GpuStartupTimings timings_;

  DeviceWeights weights_;
  KernelModule module_;
  Stream stream_;
  void* cublas_ = nullptr;  // cublasHandle_t
  std::vector<LayerW> layers_;
  const void *embed_ = nullptr, *final_norm_ = nullptr, *lm_head_w_ = nullptr;
  int64_t qkv_cols_ = 0, vocab_rows_ = 0;
  float mscale_ = 1.f;

  cudaKernel_t k_embed_{}, k_rmsnorm_{}, k_rope_{}, k_attn_{}, k_combine_{}, k_swiglu_{},
      k_checksum_{}, k_flash_{};
  // Decode attention with RoPE/KV write and the split merge fused in; absent in artifacts
  // compiled before it (then qkv_rope_kv + attention_paged + attention_combine).
  std::optional<cudaKernel_t> k_attn_decode_;
  bool pdl_ = false;
  bool pdl_now_ = false;  // this forward: pdl_ on the GEMV path (no cuBLAS kernels between ours)
  DeviceBuffer cublas_ws_;
  cudaKernel_t k_gemv_[4][8]{};          // hidden, o_res, gate_up_swiglu, down_res; batch 1..8
  cudaKernel_t k_tc_[kTcMatrices][3]{};  // per TcMatrix; 1, 2, 4 n-tiles of 8 rows
  int tc_split_[kTcMatrices]{};          // warps per tile, as the kernels were compiled
  std::optional<Int4Linear> int4_;       // INT4 artifacts
  DeviceBuffer int4_dense_;              // fp16 scratch: one dequantized matrix (long passes)

  // Workspace (sized for max_tokens_per_pass rows).
  int64_t rows_max_ = 0, split_rows_max_ = 64, splits_max_ = 32;
  DeviceBuffer ws_;
  float *x_ = nullptr, *qkv_ = nullptr, *qf_ = nullptr, *gu_ = nullptr, *logits_ = nullptr;
  float *part_o_ = nullptr, *part_ml_ = nullptr, *inv_freq_ = nullptr;
  int* attn_counters_ = nullptr;  // attention_decode's arrival counters (split_rows_max_ x KVH)
  void *h_ = nullptr, *attn_ = nullptr, *act_ = nullptr, *hl_ = nullptr;
  // Per-pass metadata on the device and its pinned host mirror.
  DeviceBuffer meta_;
  PinnedBuffer meta_host_;
  PinnedBuffer logits_host_;
  int32_t *d_tokens_ = nullptr, *d_pos_ = nullptr, *d_rowseq_ = nullptr, *d_logit_rows_ = nullptr,
          *d_tables_ = nullptr;
  long long* d_slots_ = nullptr;
  int4* d_tiles_ = nullptr;  // flash-attention query tiles {first row, rows, first pos, table row}
  size_t meta_header_bytes_ = 0;
  int64_t bt_stride_ = 0;  // max blocks per sequence

  // Paged KV pool: [layer][k|v][block][kv_head][32][head_dim]; block 0 is a scratch block
  // for padded graph rows, never given to a sequence.
  DeviceBuffer kv_;
  int64_t num_blocks_ = 0;
  size_t block_elems_ = 0;                     // per layer per k/v per block
  std::unique_ptr<KvBlockManager> kv_blocks_;  // block ids 1 .. num_blocks_-1
  int64_t max_context_ = 0;

  std::map<int, cudaGraphExec_t> graphs_;  // decode bucket -> graph
  // Sampling on the device: absent when the artifact's kernels predate it.
  std::optional<DeviceRowReducer> reducer_;
  std::span<const CandidateRequest> reduce_requests_;  // during a step_reduced()
  StepRows* reduce_out_ = nullptr;
  size_t reduce_next_ = 0;  // logits rows of this step emitted so far
  std::vector<int> reduce_rows_;
  std::vector<CandidateRequest> reduce_reqs_;
  std::vector<RowCandidates*> reduce_dst_;
  std::vector<float> whole_rows_;
  size_t view_rows_ = 0;  // rows the last step left in logits_host_ (0: copied out)
};

}  // namespace qw::gpu

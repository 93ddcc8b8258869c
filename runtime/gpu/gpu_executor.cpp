#include "gpu/gpu_executor.h"

#include <cublas_v2.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_set>

#include "artifact/tensor_names.h"
#include "cpu/rope.h"
#include "gpu/gemv_plan.h"
#include "kernels_templates/gemv_tc_plan.cuh"
#include "quant/int4_artifact.h"

namespace qw::gpu {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Status cublas_error(cublasStatus_t s, const char* what) {
  return Errorf("cuBLAS error %d (%s) in %s", int(s), cublasGetStatusString(s), what);
}
#define QW_CUBLAS(expr)                                                      \
  do {                                                                       \
    cublasStatus_t _qw_bs = (expr);                                          \
    if (_qw_bs != CUBLAS_STATUS_SUCCESS) return cublas_error(_qw_bs, #expr); \
  } while (0)

size_t align_up(size_t v, size_t a) {
  return (v + a - 1) / a * a;
}
// Byte offset of the flash tiles in the step metadata (after 4 int32 and 1 int64 per row).
size_t tiles_offset(int64_t rows) {
  return align_up(size_t(rows) * 24, 16);
}

constexpr int kDecodeBuckets[] = {1, 2, 4, 8, 16, 32, 64};
constexpr int kFlashRows = 64;  // query rows per flash-attention tile (QW_FA_BM)

// QW_PDL=0, QW_PDL_TC=0, QW_ATTN=paged, QW_GEMV_MAX_ROWS=N, QW_GEMV_KS=1|2|4, QW_TC_MAX_ROWS=N,
// QW_GRAPH_MAX=N, QW_FUSED_ATTN=0|1 override the options (A/B measurements on the device
// without rebuilding).
void apply_env_overrides(GpuExecutorOptions& o) {
  if (const char* v = std::getenv("QW_PDL")) o.pdl = std::atoi(v) != 0;
  if (const char* v = std::getenv("QW_PDL_TC")) o.pdl_tensor_core = std::atoi(v) != 0;
  if (const char* v = std::getenv("QW_ATTN")) o.flash_attention = std::string(v) != "paged";
  if (const char* v = std::getenv("QW_GEMV_MAX_ROWS"))
    o.gemv_max_rows = std::clamp(std::atoi(v), 0, 8);
  if (const char* v = std::getenv("QW_TC_MAX_ROWS")) o.tc_max_rows = std::atoi(v);
  if (const char* v = std::getenv("QW_GEMV_KS")) o.gemv_warps_per_pair = std::atoi(v);
  if (const char* v = std::getenv("QW_GRAPH_MAX")) o.max_graph_batch = std::atoi(v);
  if (const char* v = std::getenv("QW_FUSED_ATTN")) o.fused_decode_attention = std::atoi(v) != 0;
}
constexpr const char* kGemvNames[4] = {"gemv_hidden", "gemv_o_res", "gemv_gate_up_swiglu",
                                       "gemv_down_res"};
enum GemvKind { kGemvHidden = 0, kGemvORes = 1, kGemvGateUp = 2, kGemvDownRes = 3 };
constexpr const char* kTcNames[] = {"tc_qkv", "tc_o_res", "tc_gate_up_swiglu", "tc_down_res",
                                    "tc_lm_head"};

}  // namespace

Expected<std::unique_ptr<GpuExecutor>> GpuExecutor::create(std::shared_ptr<const Artifact> artifact,
                                                           const GpuExecutorOptions& opts) {
  std::unique_ptr<GpuExecutor> e(new GpuExecutor());
  QW_RETURN_IF_ERROR(e->init(std::move(artifact), opts));
  return e;
}

GpuExecutor::~GpuExecutor() {
  if (trace_.on) {
    const double n = std::max(trace_.steps, 1);
    std::fprintf(
        stderr,
        "qwrun: step trace: %d graph steps, mean us: host prep %.1f, upload+graph (GPU) %.1f, "
        "logits reduce/copy (GPU+sync) %.1f, wall %.1f\n",
        trace_.steps, trace_.prep_us / n, trace_.graph_us / n, trace_.logits_us / n,
        trace_.wall_us / n);
  }
  for (auto& [b, g] : graphs_) cudaGraphExecDestroy(g);
  if (cublas_) cublasDestroy(static_cast<cublasHandle_t>(cublas_));
}

void* GpuExecutor::kcache(int layer) const {
  return kv_.as<uint16_t>() + size_t(layer) * 2 * size_t(num_blocks_) * block_elems_;
}
void* GpuExecutor::vcache(int layer) const {
  return kv_.as<uint16_t>() + (size_t(layer) * 2 + 1) * size_t(num_blocks_) * block_elems_;
}

Status GpuExecutor::init(std::shared_ptr<const Artifact> artifact, const GpuExecutorOptions& opts) {
  art_ = std::move(artifact);
  opts_ = opts;
  apply_env_overrides(opts_);
  opts_.gemv_max_rows = std::clamp(opts_.gemv_max_rows, 0, 8);
  opts_.tc_max_rows = std::clamp(opts_.tc_max_rows, 0, QW_TC_MAX_ROWS);
  cfg_ = art_->config();
  plan_ = art_->tp_plan();
  dtype_ = art_->weight_dtype();
  device_ = opts.device;
  const int rank = opts_.tp_rank;
  if (art_->tp_size() != opts_.tp_size)
    return Errorf(
        "%s: compiled for tensor parallelism %d, run with %d GPUs (pass --tp %d, or recompile with "
        "qwc "
        "compile --tp %d)",
        art_->path().c_str(), art_->tp_size(), opts_.tp_size, art_->tp_size(), opts_.tp_size);
  if (opts_.tp_size > 1 && (!opts_.nccl || !opts_.nccl_comm))
    return Status::Error("tensor-parallel rank without an NCCL communicator");
  if (dtype_ != DType::F16 && dtype_ != DType::BF16)
    return Status::Error(art_->path() + ": weight dtype " + std::string(dtype_name(dtype_)) +
                         " is not supported on the GPU (f16, bf16)");
  QW_RETURN_IF_ERROR(check_kernel_config(cfg_, plan_, dtype_));
  int ndev = 0;
  QW_CUDA(cudaGetDeviceCount(&ndev));
  if (device_ < 0 || device_ >= ndev)
    return Errorf("GPU %d requested but %d present", device_, ndev);
  QW_CUDA(cudaSetDevice(device_));
  QW_CUDA(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, device_));
  if (const char* v = std::getenv("QW_STEP_TRACE"); v && std::atoi(v) != 0) {
    trace_.on = true;
    for (Event& e : trace_.ev) {
      QW_ASSIGN_OR_RETURN(e, Event::create(/*timing=*/true));
    }
  }
  cudaDeviceProp prop{};
  QW_CUDA(cudaGetDeviceProperties(&prop, device_));
  device_name_ = prop.name;
  pdl_ = opts_.pdl && prop.major >= 9;

  // Weights: the arena now (tensor addresses are final), the copy in the background while the
  // module loads and the workspace and KV pool are allocated; waited for before the first
  // kernel reads a weight (graph capture runs the model once; INT4 act-order reads indices).
  QW_ASSIGN_OR_RETURN(PendingWeightLoad pending_weights,
                      PendingWeightLoad::start(*art_, rank, opts.load, weights_));

  // Kernels.
  QW_ASSIGN_OR_RETURN(module_, KernelModule::load(*art_, device_));
  timings_.module_s = module_.info().seconds;
  timings_.module_source = kernel_source_name(module_.info().source);
  timings_.module_arch = module_.info().arch;
  QW_ASSIGN_OR_RETURN(k_embed_, module_.get("embedding_gather"));
  QW_ASSIGN_OR_RETURN(k_rmsnorm_, module_.get("rmsnorm"));
  QW_ASSIGN_OR_RETURN(k_rope_, module_.get("qkv_rope_kv"));
  QW_ASSIGN_OR_RETURN(k_attn_, module_.get("attention_paged"));
  QW_ASSIGN_OR_RETURN(k_combine_, module_.get("attention_combine"));
  QW_ASSIGN_OR_RETURN(k_swiglu_, module_.get("swiglu"));
  QW_ASSIGN_OR_RETURN(k_checksum_, module_.get("checksum64"));
  QW_ASSIGN_OR_RETURN(k_flash_, module_.get("attention_prefill_tc"));
  if (opts_.fused_decode_attention)
    if (auto k = module_.get("attention_decode"); k.ok()) k_attn_decode_ = *k;
  for (int g = 0; g < 4; ++g)
    for (int b = 1; b <= 8; ++b) {
      QW_ASSIGN_OR_RETURN(k_gemv_[g][b - 1],
                          module_.get(std::string(kGemvNames[g]) + "_b" + std::to_string(b)));
    }
  for (int m = 0; m < kTcMatrices; ++m)
    for (int j = 0; j < 3; ++j) {
      QW_ASSIGN_OR_RETURN(k_tc_[m][j],
                          module_.get(std::string(kTcNames[m]) + "_n" + std::to_string(1 << j)));
    }

  // Tensor addresses.
  auto addr = [&](const std::string& name, int64_t want_numel) -> Expected<const void*> {
    QW_ASSIGN_OR_RETURN(TensorView t, art_->tensor(name, rank));
    if (t.dtype != dtype_)
      return Status::Error(art_->path() + ": tensor " + name + " has an unexpected dtype");
    if (want_numel >= 0 && t.numel() != want_numel)
      return Errorf("%s: tensor %s has %lld elements, expected %lld", art_->path().c_str(),
                    name.c_str(), (long long)t.numel(), (long long)want_numel);
    if (t.offset_in_section % 16 != 0)
      return Status::Error(art_->path() + ": tensor " + name + " is misaligned");
    return weights_.ptr(t);
  };
  const int64_t H = cfg_.hidden_size, D = cfg_.head_dim, I = plan_.intermediate_per_rank;
  const int64_t QH = plan_.q_heads_per_rank, KVH = plan_.kv_heads_per_rank;
  qkv_cols_ = (QH + 2 * KVH) * D;
  vocab_rows_ = cfg_.vocab_size;
  // The same constants the kernels were specialised with (gemv_tc.cuh's kTcSplit*).
  tc_split_[kTcQkv] = qw_tc_split(qw_tc_tiles(int(qkv_cols_), false), int(H));
  tc_split_[kTcORes] = qw_tc_split(qw_tc_tiles(int(H), false), int(QH * D));
  tc_split_[kTcGateUp] = qw_tc_split(qw_tc_tiles(int(I), true), int(H));
  tc_split_[kTcDownRes] = qw_tc_split(qw_tc_tiles(int(H), false), int(I));
  tc_split_[kTcLmHead] = qw_tc_split(qw_tc_tiles(int(cfg_.vocab_size), false), int(H));
  QW_ASSIGN_OR_RETURN(embed_, addr(names::kEmbed, cfg_.vocab_size * H));
  QW_ASSIGN_OR_RETURN(final_norm_, addr(names::kFinalNorm, H));
  if (art_->has_tensor(names::kLmHead, rank)) {
    QW_ASSIGN_OR_RETURN(lm_head_w_, addr(names::kLmHead, -1));
    QW_ASSIGN_OR_RETURN(TensorView t, art_->tensor(names::kLmHead, rank));
    vocab_rows_ = t.rows();
    const int64_t want = opts_.tp_size > 1 ? plan_.vocab_per_rank : cfg_.vocab_size;
    if (t.cols() != H || vocab_rows_ < want)
      return Status::Error(art_->path() + ": lm_head.weight has an unexpected shape");
  } else {
    lm_head_w_ = embed_;
  }
  const bool quantized = quant::is_quantized(*art_, names::layer(0, names::kQkvWeight), rank);
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    LayerW w{};
    QW_ASSIGN_OR_RETURN(w.in_norm, addr(names::layer(l, names::kInputNorm), H));
    QW_ASSIGN_OR_RETURN(w.qkv_b, addr(names::layer(l, names::kQkvBias), qkv_cols_));
    QW_ASSIGN_OR_RETURN(w.post_norm, addr(names::layer(l, names::kPostNorm), H));
    if (!quantized) {
      QW_ASSIGN_OR_RETURN(w.qkv_w, addr(names::layer(l, names::kQkvWeight), qkv_cols_ * H));
      QW_ASSIGN_OR_RETURN(w.o_w, addr(names::layer(l, names::kOProj), H * QH * D));
      QW_ASSIGN_OR_RETURN(w.gu_w, addr(names::layer(l, names::kGateUp), 2 * I * H));
      QW_ASSIGN_OR_RETURN(w.down_w, addr(names::layer(l, names::kDown), H * I));
    }
    layers_.push_back(w);
  }
  if (quantized) {
    QW_ASSIGN_OR_RETURN(Int4Linear q, Int4Linear::create(*art_, rank, weights_, module_, device_));
    int4_.emplace(std::move(q));
  }

  // RoPE table.
  QW_ASSIGN_OR_RETURN(cpu::RopeParams rope, cpu::compute_rope_params(cfg_));
  mscale_ = rope.attention_scaling;

  const double tw = now_s();
  QW_ASSIGN_OR_RETURN(stream_, Stream::create());
  cublasHandle_t h = nullptr;
  QW_CUBLAS(cublasCreate(&h));
  cublas_ = h;
  QW_CUBLAS(cublasSetStream(h, stream_.get()));
  // An explicit workspace: GEMMs captured into decode graphs must not allocate.
  QW_ASSIGN_OR_RETURN(cublas_ws_, DeviceBuffer::alloc(size_t(32) << 20, "the cuBLAS workspace"));
  QW_CUBLAS(cublasSetWorkspace(h, cublas_ws_.get(), cublas_ws_.size()));

  // Context limit: the model's, bounded by the pool below.
  int64_t model_ctx = cfg_.max_position_embeddings;
  if (cfg_.rope_scaling.rope_type == "yarn" &&
      cfg_.rope_scaling.original_max_position_embeddings > 0)
    model_ctx = std::max<int64_t>(
        model_ctx, int64_t(double(cfg_.rope_scaling.original_max_position_embeddings) *
                           cfg_.rope_scaling.factor));
  if (model_ctx <= 0) model_ctx = 32768;
  bt_stride_ = blocks_for(model_ctx);

  // Workspace.
  rows_max_ = std::max<int64_t>(8, opts.max_tokens_per_pass);
  const int64_t R = rows_max_, L = std::max<int64_t>(8, opts.max_logit_rows);
  const size_t es = 2;
  size_t off = 0;
  auto carve = [&](size_t bytes) {
    size_t o = off;
    off = align_up(off + bytes, 256);
    return o;
  };
  const size_t o_x = carve(size_t(R) * H * 4), o_qkv = carve(size_t(R) * qkv_cols_ * 4),
               o_qf = carve(size_t(R) * QH * D * 4), o_gu = carve(size_t(R) * 2 * I * 4),
               o_logits = carve(size_t(L) * vocab_rows_ * 4),
               o_po = carve(size_t(split_rows_max_) * QH * splits_max_ * D * 4),
               o_pml = carve(size_t(split_rows_max_) * QH * splits_max_ * 2 * 4),
               o_cnt = carve(size_t(split_rows_max_) * KVH * 4), o_inv = carve(size_t(D / 2) * 4),
               o_h = carve(size_t(R) * H * es), o_attn = carve(size_t(R) * QH * D * es),
               o_act = carve(size_t(R) * I * es), o_hl = carve(size_t(L) * H * es);
  QW_ASSIGN_OR_RETURN(ws_, DeviceBuffer::alloc(off, "the GPU workspace"));
  uint8_t* base = ws_.as<uint8_t>();
  x_ = reinterpret_cast<float*>(base + o_x);
  qkv_ = reinterpret_cast<float*>(base + o_qkv);
  qf_ = reinterpret_cast<float*>(base + o_qf);
  gu_ = reinterpret_cast<float*>(base + o_gu);
  logits_ = reinterpret_cast<float*>(base + o_logits);
  part_o_ = reinterpret_cast<float*>(base + o_po);
  part_ml_ = reinterpret_cast<float*>(base + o_pml);
  attn_counters_ = reinterpret_cast<int*>(base + o_cnt);
  QW_CUDA(cudaMemset(attn_counters_, 0, size_t(split_rows_max_) * KVH * 4));  // kernels reset them
  inv_freq_ = reinterpret_cast<float*>(base + o_inv);
  h_ = base + o_h;
  attn_ = base + o_attn;
  act_ = base + o_act;
  hl_ = base + o_hl;
  QW_CUDA(cudaMemcpy(inv_freq_, rope.inv_freq.data(), size_t(D / 2) * 4, cudaMemcpyHostToDevice));
  if (int4_ && rows_max_ > Int4Linear::kMaxDirectRows) {
    QW_ASSIGN_OR_RETURN(int4_dense_, DeviceBuffer::alloc(int4_->max_dense_elements() * es,
                                                         "the INT4 dequantization scratch"));
  }
  if (opts.device_sampling && opts.tp_size == 1 && module_.get("reduce_rows_to_candidates").ok()) {
    QW_ASSIGN_OR_RETURN(DeviceRowReducer r, DeviceRowReducer::create(module_, L, vocab_rows_));
    reducer_.emplace(std::move(r));
  }

  // Metadata buffers: tokens, positions, row_seq, logit_rows (int32 x R), slots (int64 x R),
  // flash tiles (int4 x R), block tables (int32, R x bt_stride).
  meta_header_bytes_ = align_up(tiles_offset(R) + size_t(R) * 16, 256);
  const size_t meta_bytes = meta_header_bytes_ + size_t(R) * size_t(bt_stride_) * 4;
  QW_ASSIGN_OR_RETURN(meta_, DeviceBuffer::alloc(meta_bytes, "the step metadata"));
  QW_ASSIGN_OR_RETURN(meta_host_, PinnedBuffer::alloc(meta_bytes));
  QW_ASSIGN_OR_RETURN(logits_host_, PinnedBuffer::alloc(size_t(L) * vocab_rows_ * 4));
  {
    uint8_t* m = meta_.as<uint8_t>();
    d_tokens_ = reinterpret_cast<int32_t*>(m);
    d_pos_ = d_tokens_ + R;
    d_rowseq_ = d_pos_ + R;
    d_logit_rows_ = d_rowseq_ + R;
    d_slots_ = reinterpret_cast<long long*>(d_logit_rows_ + R);
    d_tiles_ = reinterpret_cast<int4*>(m + tiles_offset(R));
    d_tables_ = reinterpret_cast<int32_t*>(m + meta_header_bytes_);
  }

  // KV pool.
  block_elems_ = size_t(KVH) * kKvBlockTokens * size_t(D);
  const size_t block_bytes = size_t(cfg_.num_hidden_layers) * 2 * block_elems_ * es;
  size_t kv_bytes = 0;
  if (opts.kv_cache_gb > 0) {
    kv_bytes = size_t(opts.kv_cache_gb * 1024.0 * 1024.0 * 1024.0);
  } else {
    size_t free_b = 0, total_b = 0;
    QW_CUDA(cudaMemGetInfo(&free_b, &total_b));
    const size_t reserve = size_t(512) << 20;  // cuBLAS, graphs, allocator slack
    kv_bytes = free_b > reserve ? size_t(double(free_b - reserve) * opts.kv_memory_fraction) : 0;
  }
  num_blocks_ = int64_t(kv_bytes / block_bytes);
  num_blocks_ = std::min<int64_t>(num_blocks_, int64_t(1) << 30);
  if (num_blocks_ < 2)
    return Errorf("KV cache too small: %s for %lld blocks of %s", gib(double(kv_bytes)).c_str(),
                  2LL, gib(double(block_bytes)).c_str());
  QW_ASSIGN_OR_RETURN(kv_, DeviceBuffer::alloc(size_t(num_blocks_) * block_bytes, "the KV cache"));
  // Poison: a read of a slot nothing wrote shows up as NaN (0xffff is a NaN in f16 and bf16).
  QW_CUDA(cudaMemsetAsync(kv_.get(), 0xff, kv_.size(), stream_.get()));
  // Block 0 (scratch for padded rows) must hold finite values.
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    QW_CUDA(cudaMemsetAsync(kcache(int(l)), 0, block_elems_ * es, stream_.get()));
    QW_CUDA(cudaMemsetAsync(vcache(int(l)), 0, block_elems_ * es, stream_.get()));
  }
  kv_blocks_ = std::make_unique<KvBlockManager>(
      KvBlockManagerOptions{num_blocks_ - 1, kKvBlockTokens, 1, opts.prefix_caching});
  max_context_ = std::min<int64_t>(model_ctx, (num_blocks_ - 1) * kKvBlockTokens);
  QW_CUDA(cudaStreamSynchronize(stream_.get()));
  timings_.kv_bytes = kv_.size();
  timings_.kv_blocks = num_blocks_;
  timings_.workspace_s = now_s() - tw;
  auto wait_for_weights = [&]() -> Status {
    const double t = now_s();
    QW_RETURN_IF_ERROR(pending_weights.wait());
    timings_.weights_wait_s = now_s() - t;
    timings_.weights_alloc_s = weights_.stats.alloc_seconds;
    timings_.weights_copy_s = weights_.stats.copy_seconds;
    timings_.weights_gbps = weights_.stats.gbps();
    timings_.weight_bytes = weights_.stats.bytes;
    timings_.load_method = weights_.stats.method;
    return Status::Ok();
  };
  // Graph capture runs the model once per bucket on whatever the arena holds: harmless while
  // the copy is still going (it writes only workspace and the scratch KV block), except where
  // a kernel reads indices from the weights (INT4 act-order permutations).
  const bool capture_reads_indices = int4_ && int4_->has_permutation();
  if (!opts.cuda_graphs || capture_reads_indices) QW_RETURN_IF_ERROR(wait_for_weights());
  if (opts.cuda_graphs) {
    const double tg = now_s();
    QW_RETURN_IF_ERROR(capture_graphs());
    timings_.graph_capture_s = now_s() - tg;
    timings_.graphs = int(graphs_.size());
    if (!capture_reads_indices) QW_RETURN_IF_ERROR(wait_for_weights());
  }
  return Status::Ok();
}

int GpuExecutor::attention_splits(int rows) const {
  if (rows > split_rows_max_) return 1;
  const int64_t ctas = int64_t(rows) * plan_.kv_heads_per_rank;
  int n = int((2 * sms_ + ctas - 1) / ctas);
  return std::clamp(n, 1, int(splits_max_));
}

Status GpuExecutor::gemm(const void* a, const void* w, float* c, int rows, int n, int k,
                         bool accumulate) {
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  const cudaDataType_t t = dtype_ == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
  // Row-major C[rows, n] = A[rows, k] W[n, k]^T  ==  column-major C^T = W^T(op T) A^T.
  QW_CUBLAS(cublasGemmEx(static_cast<cublasHandle_t>(cublas_), CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k,
                         &alpha, w, t, k, a, t, k, &beta, c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT));
  return Status::Ok();
}

bool GpuExecutor::dense_pdl(DenseKernel dk) const {
  return pdl_ &&
         (dk == DenseKernel::Gemv || (dk == DenseKernel::TensorCore && opts_.pdl_tensor_core));
}

GpuExecutor::DenseKernel GpuExecutor::dense_kernel(int rows) const {
  if (rows <= opts_.gemv_max_rows) return DenseKernel::Gemv;
  if (rows <= opts_.tc_max_rows) return DenseKernel::TensorCore;
  return DenseKernel::Cublas;
}

Status GpuExecutor::tc_linear(TcMatrix m, const void* w, const void* x, int rows, float* y,
                              void* yh, int n) {
  const int split = tc_split_[m];
  const int nt = qw_tc_ntiles(rows);
  const int tiles = qw_tc_tiles(n, m == kTcGateUp);
  return run_kernel(k_tc_[m][nt == 1   ? 0
                             : nt == 2 ? 1
                                       : 2],
                    dim3(unsigned(qw_tc_blocks(tiles, split))),
                    dim3(unsigned(qw_tc_warps_per_block(split) * 32)), w, x, y, yh, n, rows);
}

Status GpuExecutor::int4_projection(Int4Proj p, int l, const void* x, int rows, float* y) {
  cudaStream_t s = stream_.get();
  if (rows <= Int4Linear::kMaxDirectRows)
    return int4_->multiply(p, l, x, rows, y, act_, s, pdl_now_);
  const int H = int(cfg_.hidden_size), I = int(plan_.intermediate_per_rank);
  const int QD = int(plan_.q_heads_per_rank * cfg_.head_dim);
  QW_RETURN_IF_ERROR(int4_->dequantize(p, l, int4_dense_.get(), s));
  switch (p) {
    case Int4Proj::Qkv:
      return gemm(x, int4_dense_.get(), y, rows, int(qkv_cols_), H, false);
    case Int4Proj::ORes:
      return gemm(x, int4_dense_.get(), y, rows, H, QD, true);
    case Int4Proj::DownRes:
      return gemm(x, int4_dense_.get(), y, rows, H, I, true);
    case Int4Proj::GateUpSwiglu:
      QW_RETURN_IF_ERROR(gemm(x, int4_dense_.get(), gu_, rows, 2 * I, H, false));
      return run_kernel(k_swiglu_,
                        dim3(unsigned(std::min<int64_t>((int64_t(rows) * I + 255) / 256, 65535))),
                        dim3(256), static_cast<const float*>(gu_), act_, rows);
  }
  return Status::Ok();
}

Status GpuExecutor::run_gemv(int kind, int rows, const void* w, const void* x, float* y, void* yh,
                             int n) {
  const int64_t pairs = kind == kGemvGateUp ? n : (int64_t(n) + 1) / 2;
  const int forced = opts_.gemv_warps_per_pair;
  const int ks =
      forced == 1 || forced == 2 || forced == 4 ? forced : gemv_warps_per_pair(pairs, sms_, rows);
  return run_kernel(k_gemv_[kind][rows - 1], dim3(unsigned(gemv_blocks(pairs, ks))),
                    dim3(kGemvWarpsPerBlock * 32), w, x, y, yh, n, ks);
}

Status GpuExecutor::lm_head(int first_row, int rows) {
  const int H = int(cfg_.hidden_size);
  const int* idx = d_logit_rows_ + first_row;
  const DenseKernel dk = dense_kernel(rows);
  // Not the tensor-core lm_head of INT4 artifacts: with it their b8 steps were 6% slower
  // (H100, session 10; its blocks, released early through the rmsnorm, likely compete with
  // the INT4 down_proj's last wave). FP16 artifacts gain 1.3% at b8.
  pdl_now_ = dense_pdl(dk) && !(int4_ && dk == DenseKernel::TensorCore);
  QW_RETURN_IF_ERROR(run_kernel(k_rmsnorm_, dim3(rows), dim3(256), x_,
                                static_cast<const float*>(nullptr), final_norm_, hl_, rows, idx));
  const int n = int(vocab_rows_);
  if (dk == DenseKernel::Gemv) {
    return run_gemv(kGemvHidden, rows, lm_head_w_, hl_, logits_, nullptr, n);
  }
  if (dk == DenseKernel::TensorCore)
    return tc_linear(kTcLmHead, lm_head_w_, hl_, rows, logits_, nullptr, n);
  return gemm(hl_, lm_head_w_, logits_, rows, int(vocab_rows_), H, false);
}

Status GpuExecutor::begin_row_parallel(int rows) {
  if (opts_.tp_size > 1 && opts_.tp_rank > 0)
    QW_CUDA(cudaMemsetAsync(x_, 0, size_t(rows) * size_t(cfg_.hidden_size) * sizeof(float),
                            stream_.get()));
  return Status::Ok();
}

Status GpuExecutor::end_row_parallel(int rows) {
  if (opts_.tp_size <= 1) return Status::Ok();
  QW_NCCL(*opts_.nccl,
          opts_.nccl->all_reduce(x_, x_, size_t(rows) * size_t(cfg_.hidden_size), ncclFloat32,
                                 ncclSum, opts_.nccl_comm, stream_.get()));
  return Status::Ok();
}

// One forward through every layer over `rows` rows whose metadata is on the device; the
// residual stream ends in x_ (lm_head() then normalises the rows that need logits).
Status GpuExecutor::forward(int rows, int nsplit, int ntiles, bool decode) {
  const int H = int(cfg_.hidden_size), D = int(cfg_.head_dim), I = int(plan_.intermediate_per_rank);
  const int QH = int(plan_.q_heads_per_rank), KVH = int(plan_.kv_heads_per_rank);
  // INT4 artifacts: int4_projection() multiplies the projections (checked first below).
  const DenseKernel dk = dense_kernel(rows);
  const bool gemv = dk == DenseKernel::Gemv, tc = dk == DenseKernel::TensorCore;
  // PDL pairs kernels that trigger and wait (ours); cuBLAS and the INT4 dequantization
  // passes (more than Int4Linear::kMaxDirectRows rows) run without it.
  pdl_now_ = int4_ ? pdl_ && rows <= Int4Linear::kMaxDirectRows : dense_pdl(dk);
  const float scale_log2 = float(1.0 / std::sqrt(double(D)) * 1.4426950408889634);
  const float* nullf = nullptr;
  const int* nulli = nullptr;
  QW_RETURN_IF_ERROR(run_kernel(k_embed_, dim3(rows), dim3(128), static_cast<const int*>(d_tokens_),
                                embed_, x_, rows));
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerW& w = layers_[l];
    QW_RETURN_IF_ERROR(
        run_kernel(k_rmsnorm_, dim3(rows), dim3(256), x_, nullf, w.in_norm, h_, rows, nulli));
    if (int4_) {
      QW_RETURN_IF_ERROR(int4_projection(Int4Proj::Qkv, int(l), h_, rows, qkv_));
    } else if (gemv) {
      QW_RETURN_IF_ERROR(run_gemv(kGemvHidden, rows, w.qkv_w, h_, qkv_, nullptr, int(qkv_cols_)));
    } else if (tc) {
      QW_RETURN_IF_ERROR(tc_linear(kTcQkv, w.qkv_w, h_, rows, qkv_, nullptr, int(qkv_cols_)));
    } else {
      QW_RETURN_IF_ERROR(gemm(h_, w.qkv_w, qkv_, rows, int(qkv_cols_), H, false));
    }
    if (decode && k_attn_decode_ && ntiles == 0 && (nsplit == 1 || rows <= split_rows_max_)) {
      QW_RETURN_IF_ERROR(run_kernel(
          *k_attn_decode_, dim3(rows, KVH, nsplit), dim3(128), static_cast<const float*>(qkv_),
          w.qkv_b, static_cast<const int*>(d_pos_), static_cast<const long long*>(d_slots_),
          static_cast<const float*>(inv_freq_), mscale_, kcache(int(l)), vcache(int(l)),
          static_cast<const int*>(d_rowseq_), static_cast<const int*>(d_tables_), int(bt_stride_),
          nsplit, scale_log2, attn_, part_o_, part_ml_, attn_counters_));
    } else {
      QW_RETURN_IF_ERROR(
          run_kernel(k_rope_, dim3(unsigned(rows), unsigned(QH + 2 * KVH)), dim3(unsigned(D / 2)),
                     static_cast<const float*>(qkv_), w.qkv_b, static_cast<const int*>(d_pos_),
                     static_cast<const long long*>(d_slots_), static_cast<const float*>(inv_freq_),
                     mscale_, qf_, kcache(int(l)), vcache(int(l)), rows));
      if (ntiles > 0) {
        QW_RETURN_IF_ERROR(
            run_kernel(k_flash_, dim3(unsigned(ntiles), unsigned(QH)), dim3(128),
                       static_cast<const float*>(qf_), static_cast<const void*>(kcache(int(l))),
                       static_cast<const void*>(vcache(int(l))), static_cast<const int4*>(d_tiles_),
                       static_cast<const int*>(d_tables_), int(bt_stride_), scale_log2, attn_));
      } else {
        QW_RETURN_IF_ERROR(
            run_kernel(k_attn_, dim3(rows, KVH, nsplit), dim3(128), static_cast<const float*>(qf_),
                       static_cast<const void*>(kcache(int(l))),
                       static_cast<const void*>(vcache(int(l))), static_cast<const int*>(d_rowseq_),
                       static_cast<const int*>(d_pos_), static_cast<const int*>(d_tables_),
                       int(bt_stride_), nsplit, scale_log2, attn_, part_o_, part_ml_));
        if (nsplit > 1) {
          QW_RETURN_IF_ERROR(run_kernel(k_combine_, dim3(rows, QH), dim3(D),
                                        static_cast<const float*>(part_o_),
                                        static_cast<const float*>(part_ml_), nsplit, attn_));
        }
      }
    }
    QW_RETURN_IF_ERROR(begin_row_parallel(rows));
    if (int4_) {
      QW_RETURN_IF_ERROR(int4_projection(Int4Proj::ORes, int(l), attn_, rows, x_));
    } else if (gemv) {
      QW_RETURN_IF_ERROR(run_gemv(kGemvORes, rows, w.o_w, attn_, x_, nullptr, H));
    } else if (tc) {
      QW_RETURN_IF_ERROR(tc_linear(kTcORes, w.o_w, attn_, rows, x_, nullptr, H));
    } else {
      QW_RETURN_IF_ERROR(gemm(attn_, w.o_w, x_, rows, H, QH * D, true));
    }
    QW_RETURN_IF_ERROR(end_row_parallel(rows));
    QW_RETURN_IF_ERROR(
        run_kernel(k_rmsnorm_, dim3(rows), dim3(256), x_, nullf, w.post_norm, h_, rows, nulli));
    if (int4_) {
      QW_RETURN_IF_ERROR(int4_projection(Int4Proj::GateUpSwiglu, int(l), h_, rows, nullptr));
      QW_RETURN_IF_ERROR(begin_row_parallel(rows));
      QW_RETURN_IF_ERROR(int4_projection(Int4Proj::DownRes, int(l), act_, rows, x_));
    } else if (gemv) {
      QW_RETURN_IF_ERROR(run_gemv(kGemvGateUp, rows, w.gu_w, h_, nullptr, act_, I));
      QW_RETURN_IF_ERROR(begin_row_parallel(rows));
      QW_RETURN_IF_ERROR(run_gemv(kGemvDownRes, rows, w.down_w, act_, x_, nullptr, H));
    } else if (tc) {
      QW_RETURN_IF_ERROR(tc_linear(kTcGateUp, w.gu_w, h_, rows, nullptr, act_, I));
      QW_RETURN_IF_ERROR(begin_row_parallel(rows));
      QW_RETURN_IF_ERROR(tc_linear(kTcDownRes, w.down_w, act_, rows, x_, nullptr, H));
    } else {
      QW_RETURN_IF_ERROR(gemm(h_, w.gu_w, gu_, rows, 2 * I, H, false));
      QW_RETURN_IF_ERROR(run_kernel(
          k_swiglu_, dim3(unsigned(std::min<int64_t>((int64_t(rows) * I + 255) / 256, 65535))),
          dim3(256), static_cast<const float*>(gu_), act_, rows));
      QW_RETURN_IF_ERROR(begin_row_parallel(rows));
      QW_RETURN_IF_ERROR(gemm(act_, w.down_w, x_, rows, H, I, true));
    }
    QW_RETURN_IF_ERROR(end_row_parallel(rows));
  }
  return Status::Ok();
}

Status GpuExecutor::capture_graphs() {
  Status st = capture_graphs_once();
  if (st.ok() || !pdl_) return st;
  // A driver that cannot capture programmatic launches: capture without them.
  std::fprintf(stderr,
               "qwrun: decode graphs with programmatic dependent launch failed (%s); without it\n",
               st.message().c_str());
  (void)cudaGetLastError();
  for (auto& [b, g] : graphs_) cudaGraphExecDestroy(g);
  graphs_.clear();
  pdl_ = false;
  return capture_graphs_once();
}

Status GpuExecutor::capture_graphs_once() {
  cudaStream_t s = stream_.get();
  // Padded rows: token 0 at position 0 of the scratch block 0 (table row all zeros).
  const int64_t L = std::max<int64_t>(8, opts_.max_logit_rows);
  for (int b : kDecodeBuckets) {
    if (b > opts_.max_graph_batch || b > rows_max_ || b > L) continue;
    int32_t* hm = meta_host_.as<int32_t>();
    const int64_t R = rows_max_;
    std::memset(hm, 0, meta_header_bytes_);
    for (int r = 0; r < b; ++r) {
      hm[R * 3 + r] = r;  // logit rows = identity
      hm[R * 2 + r] = 0;  // row_seq 0
    }
    QW_CUDA(cudaMemcpyAsync(meta_.get(), hm, meta_header_bytes_, cudaMemcpyHostToDevice, s));
    QW_CUDA(cudaMemsetAsync(d_tables_, 0, size_t(bt_stride_) * 4, s));
    const int nsplit = attention_splits(b);
    // Warm-up run outside capture (lazy module loading, cuBLAS init).
    QW_RETURN_IF_ERROR(forward(b, nsplit, 0, true));
    QW_RETURN_IF_ERROR(lm_head(0, b));
    QW_CUDA(cudaStreamSynchronize(s));
    cudaGraph_t graph = nullptr;
    QW_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    Status st = forward(b, nsplit, 0, true);
    if (st.ok()) st = lm_head(0, b);
    cudaError_t e = cudaStreamEndCapture(s, &graph);
    if (!st.ok()) {
      if (graph) cudaGraphDestroy(graph);
      return st.context("capturing the decode graph");
    }
    if (e != cudaSuccess) return cuda_error(e, "cudaStreamEndCapture", __FILE__, __LINE__);
    cudaGraphExec_t exec = nullptr;
    e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) return cuda_error(e, "cudaGraphInstantiate", __FILE__, __LINE__);
    graphs_[b] = exec;
  }
  return Status::Ok();
}

Status GpuExecutor::step(std::span<const StepInput> inputs, std::vector<float>& logits) {
  return run_step(inputs, logits, false);
}

Status GpuExecutor::run_step(std::span<const StepInput> inputs, std::vector<float>& logits,
                             bool allow_view) {
  if (trace_.on) trace_.t_entry = std::chrono::steady_clock::now();
  logits.clear();
  QW_CUDA(cudaSetDevice(device_));
  std::unordered_set<SeqId> seen;
  int64_t need_blocks = 0;
  for (const StepInput& in : inputs) {
    if (!seen.insert(in.seq).second)
      return Errorf("step: sequence %llu appears twice", (unsigned long long)in.seq);
    if (in.tokens.empty())
      return Errorf("step: sequence %llu has no tokens", (unsigned long long)in.seq);
    const int64_t len = kv_blocks_->length(in.seq);
    if (in.start_pos != len)
      return Errorf("step: sequence %llu starts at %lld but %lld tokens are cached",
                    (unsigned long long)in.seq, (long long)in.start_pos, (long long)len);
    const int64_t total = len + int64_t(in.tokens.size());
    if (total > max_context_)
      return Errorf(
          "step: sequence %llu would hold %lld tokens, past the maximum context of %lld (model "
          "limit %lld, KV pool %lld)",
          (unsigned long long)in.seq, (long long)total, (long long)max_context_,
          (long long)std::max<int64_t>(bt_stride_ * kKvBlockTokens, 0),
          (long long)((num_blocks_ - 1) * kKvBlockTokens));
    for (int32_t t : in.tokens)
      if (t < 0 || t >= cfg_.vocab_size)
        return Errorf("step: sequence %llu: token id %d outside the vocabulary [0, %lld)",
                      (unsigned long long)in.seq, t, (long long)cfg_.vocab_size);
    need_blocks += kv_blocks_->blocks_needed(in.seq, total);
  }
  if (need_blocks > kv_blocks_->blocks_available())
    return Errorf("step: KV cache full: %lld more blocks of %d tokens needed, %lld free of %lld",
                  (long long)need_blocks, kKvBlockTokens, (long long)kv_blocks_->blocks_available(),
                  (long long)(num_blocks_ - 1));
  for (const StepInput& in : inputs)
    QW_RETURN_IF_ERROR(kv_blocks_->reserve(in.seq, in.start_pos + int64_t(in.tokens.size())));
  int64_t total_rows = 0;
  for (const StepInput& in : inputs) total_rows += int64_t(in.tokens.size());
  view_rows_ = 0;
  allow_view = allow_view && total_rows <= rows_max_;  // a later pass would overwrite the first's
  // Split into passes of at most rows_max_ rows.
  std::vector<Piece> pass;
  int64_t rows = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const int64_t n = int64_t(inputs[i].tokens.size());
    for (int64_t b = 0; b < n;) {
      const int64_t take = std::min(n - b, rows_max_ - rows);
      pass.push_back({i, b, take});
      rows += take;
      b += take;
      if (rows == rows_max_) {
        QW_RETURN_IF_ERROR(run_pass(inputs, pass, logits, allow_view));
        pass.clear();
        rows = 0;
      }
    }
  }
  if (!pass.empty()) QW_RETURN_IF_ERROR(run_pass(inputs, pass, logits, allow_view));
  return Status::Ok();
}

Status GpuExecutor::run_pass(std::span<const StepInput> inputs, const std::vector<Piece>& pieces,
                             std::vector<float>& logits, bool allow_view) {
  cudaStream_t s = stream_.get();
  const int64_t R = rows_max_;
  int32_t* hm = meta_host_.as<int32_t>();
  int32_t *h_tok = hm, *h_pos = hm + R, *h_rowseq = hm + 2 * R, *h_lrows = hm + 3 * R;
  long long* h_slots = reinterpret_cast<long long*>(hm + 4 * R);
  int32_t* h_tables = reinterpret_cast<int32_t*>(meta_host_.as<uint8_t>() + meta_header_bytes_);
  int4* h_tiles = reinterpret_cast<int4*>(meta_host_.as<uint8_t>() + tiles_offset(R));
  int rows = 0, nlog = 0, max_cols = 0, ntiles = 0;
  bool all_decode = true;
  for (size_t p = 0; p < pieces.size(); ++p) {
    const Piece& pc = pieces[p];
    const StepInput& in = inputs[pc.input];
    const std::vector<int32_t>& table = kv_blocks_->table(in.seq);
    const int64_t n = int64_t(in.tokens.size());
    const int cols = int(blocks_for(in.start_pos + pc.begin + pc.len));
    max_cols = std::max(max_cols, cols);
    std::memcpy(h_tables + p * size_t(bt_stride_), table.data(), size_t(cols) * 4);
    if (pc.len != 1) all_decode = false;
    for (int64_t t0 = 0; t0 < pc.len; t0 += kFlashRows)
      h_tiles[ntiles++] = make_int4(rows + int(t0), int(std::min<int64_t>(kFlashRows, pc.len - t0)),
                                    int(in.start_pos + pc.begin + t0), int(p));
    for (int64_t j = 0; j < pc.len; ++j) {
      const int64_t pos = in.start_pos + pc.begin + j;
      h_tok[rows] = in.tokens[size_t(pc.begin + j)];
      h_pos[rows] = int32_t(pos);
      h_rowseq[rows] = int32_t(p);
      h_slots[rows] =
          (long long)table[size_t(pos / kKvBlockTokens)] * kKvBlockTokens + pos % kKvBlockTokens;
      const bool last = pc.begin + j == n - 1;
      if (in.all_logits || (in.want_logits && last)) h_lrows[nlog++] = rows;
      ++rows;
    }
  }
  const int npieces = int(pieces.size());
  int bucket = 0;
  if (all_decode)
    for (const auto& [b, g] : graphs_)
      if (b >= rows) {
        bucket = b;
        break;
      }
  const bool use_graph = bucket > 0;
  const bool flash = !all_decode && opts_.flash_attention;
  if (flash)  // longest key ranges first: the tail of the grid is the short tiles
    std::sort(h_tiles, h_tiles + ntiles,
              [](const int4& a, const int4& b) { return a.z + a.y > b.z + b.y; });
  if (use_graph) {
    for (int r = rows; r < bucket; ++r) {  // padded rows -> scratch block 0 via table row npieces
      h_tok[r] = 0;
      h_pos[r] = 0;
      h_rowseq[r] = npieces;
      h_slots[r] = 0;
    }
    std::memset(h_tables + size_t(npieces) * size_t(bt_stride_), 0, 4);
    // In a graph every row produces logits; map logit rows to identity.
    for (int r = 0; r < bucket; ++r) h_lrows[r] = r;
  }
  const bool trace = trace_.on && use_graph;
  if (trace) QW_CUDA(cudaEventRecord(trace_.ev[0].get(), s));
  const auto t_launch = std::chrono::steady_clock::now();
  QW_CUDA(cudaMemcpyAsync(meta_.get(), hm, meta_header_bytes_, cudaMemcpyHostToDevice, s));
  const int table_rows = npieces + (use_graph ? 1 : 0);
  QW_CUDA(cudaMemcpy2DAsync(d_tables_, size_t(bt_stride_) * 4, h_tables, size_t(bt_stride_) * 4,
                            size_t(std::max(max_cols, 1)) * 4, size_t(table_rows),
                            cudaMemcpyHostToDevice, s));
  const size_t V = size_t(logit_columns()), Vr = size_t(vocab_rows_);
  if (use_graph) {
    QW_CUDA(cudaGraphLaunch(graphs_.at(bucket), s));
    if (trace) QW_CUDA(cudaEventRecord(trace_.ev[1].get(), s));
    // Logits of the rows that asked for them (in graph mode rows == pieces).
    std::vector<int> wanted;
    for (int r = 0; r < rows; ++r) {
      const StepInput& in = inputs[pieces[size_t(r)].input];
      if (in.want_logits || in.all_logits) wanted.push_back(r);
    }
    if (!wanted.empty() && allow_view && !reduce_out_ && Vr == V && wanted.size() == size_t(rows)) {
      QW_CUDA(cudaMemcpyAsync(logits_host_.get(), logits_, size_t(rows) * Vr * 4,
                              cudaMemcpyDeviceToHost, s));
      QW_CUDA(cudaStreamSynchronize(s));
      view_rows_ = size_t(rows);  // the rows stay where they are, in order
    } else {
      QW_RETURN_IF_ERROR(emit_logits(wanted, logits));
    }
    if (trace) {
      QW_CUDA(cudaEventRecord(trace_.ev[2].get(), s));
      QW_CUDA(cudaEventSynchronize(trace_.ev[2].get()));
      float g = 0, l = 0;
      QW_CUDA(cudaEventElapsedTime(&g, trace_.ev[0].get(), trace_.ev[1].get()));
      QW_CUDA(cudaEventElapsedTime(&l, trace_.ev[1].get(), trace_.ev[2].get()));
      const auto now = std::chrono::steady_clock::now();
      trace_.steps++;
      trace_.prep_us +=
          std::chrono::duration<double, std::micro>(t_launch - trace_.t_entry).count();
      trace_.graph_us += g * 1e3;
      trace_.logits_us += l * 1e3;
      trace_.wall_us += std::chrono::duration<double, std::micro>(now - trace_.t_entry).count();
    }
  } else {
    QW_RETURN_IF_ERROR(forward(rows, attention_splits(rows), flash ? ntiles : 0, all_decode));
    const int L = int(std::max<int64_t>(8, opts_.max_logit_rows));
    for (int first = 0; first < nlog; first += L) {
      const int n = std::min(L, nlog - first);
      QW_RETURN_IF_ERROR(lm_head(first, n));
      std::vector<int> group(static_cast<size_t>(n));
      for (int r = 0; r < n; ++r) group[size_t(r)] = r;
      QW_RETURN_IF_ERROR(emit_logits(group, logits));
    }
    QW_CUDA(cudaStreamSynchronize(s));
  }
  QW_CUDA(cudaGetLastError());
  for (const Piece& pc : pieces)
    kv_blocks_->commit(inputs[pc.input].seq,
                       inputs[pc.input].tokens.subspan(size_t(pc.begin), size_t(pc.len)));
  return Status::Ok();
}

Status GpuExecutor::emit_logits(std::span<const int> device_rows, std::vector<float>& logits) {
  cudaStream_t s = stream_.get();
  const size_t V = size_t(logit_columns()), Vr = size_t(vocab_rows_);
  // Rows to copy whole: all of them, or in a step_reduced() those without a request and
  // those whose ties overflowed the candidates.
  std::vector<int> whole;
  if (reduce_out_) {
    reduce_rows_.clear();
    reduce_reqs_.clear();
    reduce_dst_.clear();
    for (size_t j = 0; j < device_rows.size(); ++j) {
      const size_t g = reduce_next_ + j;
      if (g >= reduce_requests_.size())
        return Errorf("step_reduced: more logits rows than the %zu requests",
                      reduce_requests_.size());
      reduce_out_->candidates[g].complete = false;
      if (reduce_requests_[g].k > 0) {
        reduce_rows_.push_back(device_rows[j]);
        reduce_reqs_.push_back(reduce_requests_[g]);
        reduce_dst_.push_back(&reduce_out_->candidates[g]);
      }
    }
    QW_RETURN_IF_ERROR(
        reducer_->reduce(s, logits_, int64_t(V), reduce_rows_, reduce_reqs_, reduce_dst_));
    for (size_t j = 0; j < device_rows.size(); ++j) {
      const size_t g = reduce_next_ + j;
      if (reduce_out_->candidates[g].complete) {
        reduce_out_->row_index[g] = -1;
      } else {
        reduce_out_->row_index[g] = int64_t(logits.size() / V + whole.size());
        whole.push_back(device_rows[j]);
      }
    }
    reduce_next_ += device_rows.size();
  } else {
    whole.assign(device_rows.begin(), device_rows.end());
  }
  if (whole.empty()) return Status::Ok();
  bool contiguous = true;
  for (size_t j = 0; j < whole.size(); ++j)
    contiguous = contiguous && whole[j] == whole[0] + int(j);
  if (contiguous) {
    QW_CUDA(cudaMemcpyAsync(logits_host_.get(), logits_ + size_t(whole[0]) * Vr,
                            whole.size() * Vr * 4, cudaMemcpyDeviceToHost, s));
  } else {
    for (size_t j = 0; j < whole.size(); ++j)
      QW_CUDA(cudaMemcpyAsync(logits_host_.as<float>() + j * Vr, logits_ + size_t(whole[j]) * Vr,
                              Vr * 4, cudaMemcpyDeviceToHost, s));
  }
  QW_CUDA(cudaStreamSynchronize(s));
  for (size_t j = 0; j < whole.size(); ++j) {
    const float* src = logits_host_.as<float>() + j * Vr;
    logits.insert(logits.end(), src, src + V);
  }
  return Status::Ok();
}

Status GpuExecutor::step_reduced(std::span<const StepInput> inputs,
                                 std::span<const CandidateRequest> requests, StepRows& out) {
  bool any = false, all_logits = false;
  for (const CandidateRequest& r : requests) any = any || r.k > 0;
  for (const StepInput& in : inputs) all_logits = all_logits || in.all_logits;
  if (!reducer_ || !any || all_logits) return ModelExecutor::step_reduced(inputs, requests, out);
  out.candidates.resize(requests.size());
  out.row_index.assign(requests.size(), -1);
  reduce_requests_ = requests;
  reduce_out_ = &out;
  reduce_next_ = 0;
  const Status st = run_step(inputs, whole_rows_, false);
  reduce_out_ = nullptr;
  QW_RETURN_IF_ERROR(st);
  if (reduce_next_ != requests.size())
    return Errorf("step_reduced: %zu candidate requests for %zu logits rows", requests.size(),
                  reduce_next_);
  out.rows = whole_rows_;
  return Status::Ok();
}

Expected<std::span<const float>> GpuExecutor::step_view(std::span<const StepInput> inputs) {
  QW_RETURN_IF_ERROR(run_step(inputs, view_logits_, true));
  if (view_rows_ == 0) return std::span<const float>(view_logits_);
  return std::span<const float>(logits_host_.as<float>(), view_rows_ * size_t(cfg_.vocab_size));
}

void GpuExecutor::release(SeqId seq) {
  kv_blocks_->release(seq);
}

int64_t GpuExecutor::attach_prefix(SeqId seq, std::span<const int32_t> tokens) {
  return kv_blocks_->attach_prefix(seq, tokens);
}

bool GpuExecutor::can_append(SeqId seq, int64_t n) const {
  const int64_t len = kv_blocks_->length(seq) + n;
  return len <= max_context_ &&
         kv_blocks_->blocks_needed(seq, len) <= kv_blocks_->blocks_available();
}

KvUsage GpuExecutor::kv_usage() const {
  return kv_blocks_->usage();
}

Expected<uint64_t> GpuExecutor::device_weights_checksum() {
  cudaStream_t s = stream_.get();
  const uint64_t nwords = weights_.arena.size() / 8;
  const int blocks = 1024;
  QW_ASSIGN_OR_RETURN(DeviceBuffer partial, DeviceBuffer::alloc(blocks * 8, "checksum partials"));
  QW_RETURN_IF_ERROR(launch(k_checksum_, dim3(blocks), dim3(1024), 0, s,
                            static_cast<const uint64_t*>(weights_.arena.get()), nwords,
                            partial.as<uint64_t>()));
  std::vector<uint64_t> h(blocks);
  QW_CUDA(cudaMemcpyAsync(h.data(), partial.get(), blocks * 8, cudaMemcpyDeviceToHost, s));
  QW_CUDA(cudaStreamSynchronize(s));
  uint64_t sum = 0;
  for (uint64_t v : h) sum += v;
  return sum;
}

}  // namespace qw::gpu

namespace qw::gpu {

GpuMemoryUse GpuExecutor::memory_use() const {
  GpuMemoryUse m;
  m.weights = weights_.arena.size();
  m.kv_cache = kv_.size();
  m.workspace = ws_.size() + meta_.size() + cublas_ws_.size();
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
    m.device_used = total_b - free_b;
    m.device_total = total_b;
  }
  return m;
}

std::vector<int> GpuExecutor::graph_buckets() const {
  std::vector<int> b;
  for (const auto& [k, g] : graphs_) b.push_back(k);
  return b;
}

Expected<double> GpuExecutor::time_graph_replay(int bucket, int iters) {
  auto it = graphs_.find(bucket);
  if (it == graphs_.end()) return Errorf("no decode graph for %d rows", bucket);
  cudaStream_t s = stream_.get();
  QW_CUDA(cudaSetDevice(device_));
  // Every row on the scratch block at position 0 (as padded rows are).
  int32_t* hm = meta_host_.as<int32_t>();
  const int64_t R = rows_max_;
  std::memset(hm, 0, meta_header_bytes_);
  for (int r = 0; r < bucket; ++r) hm[R * 3 + r] = r;
  QW_CUDA(cudaMemcpyAsync(meta_.get(), hm, meta_header_bytes_, cudaMemcpyHostToDevice, s));
  QW_CUDA(cudaMemsetAsync(d_tables_, 0, size_t(bt_stride_) * 4, s));
  QW_ASSIGN_OR_RETURN(Event e0, Event::create(true));
  QW_ASSIGN_OR_RETURN(Event e1, Event::create(true));
  std::vector<double> ms;
  for (int i = 0; i < iters + 3; ++i) {
    QW_CUDA(cudaEventRecord(e0.get(), s));
    QW_CUDA(cudaGraphLaunch(it->second, s));
    QW_CUDA(cudaEventRecord(e1.get(), s));
    QW_CUDA(cudaEventSynchronize(e1.get()));
    float t = 0;
    QW_CUDA(cudaEventElapsedTime(&t, e0.get(), e1.get()));
    if (i >= 3) ms.push_back(t);
  }
  QW_CUDA(cudaGetLastError());
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace qw::gpu

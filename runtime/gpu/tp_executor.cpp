#include "gpu/tp_executor.h"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace qw::gpu {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Expected<std::unique_ptr<TpGpuExecutor>> TpGpuExecutor::create(std::shared_ptr<const Artifact> artifact,
                                                               const GpuExecutorOptions& opts) {
  const double t0 = now_s();
  const int tp = artifact->tp_size();
  int ndev = 0;
  QW_CUDA(cudaGetDeviceCount(&ndev));
  if (opts.device < 0 || opts.device + tp > ndev)
    return Errorf("%s: compiled for tensor parallelism %d, which needs %d GPUs from GPU %d; %d present",
                  artifact->path().c_str(), tp, tp, opts.device, ndev);
  std::unique_ptr<TpGpuExecutor> e(new TpGpuExecutor());
  std::vector<int> devices(static_cast<size_t>(tp));
  for (int r = 0; r < tp; ++r) devices[size_t(r)] = opts.device + r;
  QW_ASSIGN_OR_RETURN(e->comms_, NcclComms::create(devices));
  e->pool_ = std::make_unique<ThreadPool>(tp);
  e->ranks_.resize(size_t(tp));
  e->rank_logits_.resize(size_t(tp));
  // Ranks start together: each copies only its own section, and their warm-up forwards
  // (before graph capture) meet in the same all-reduces.
  std::vector<Status> status(static_cast<size_t>(tp));
  e->pool_->parallel_for(tp, 1, [&](int64_t b, int64_t end) {
    for (int64_t r = b; r < end; ++r) {
      GpuExecutorOptions o = opts;
      o.device = devices[size_t(r)];
      o.tp_rank = int(r);
      o.tp_size = tp;
      o.nccl = &e->comms_.api();
      o.nccl_comm = e->comms_[size_t(r)];
      auto x = GpuExecutor::create(artifact, o);
      if (x.ok()) e->ranks_[size_t(r)] = std::move(*x);
      else status[size_t(r)] = x.status().context("rank " + std::to_string(r) + " (GPU " + std::to_string(o.device) + ")");
    }
  });
  for (const Status& s : status) QW_RETURN_IF_ERROR(s);
  e->max_context_ = e->ranks_[0]->max_context();
  for (const auto& r : e->ranks_) e->max_context_ = std::min(e->max_context_, r->max_context());
  e->startup_s_ = now_s() - t0;
  return e;
}

TpGpuExecutor::~TpGpuExecutor() {
  ranks_.clear();  // before the communicators they use
}

std::string TpGpuExecutor::device_name() const {
  return std::to_string(ranks_.size()) + " x " + ranks_[0]->device_name() + " (tp " + std::to_string(ranks_.size()) +
         ", NCCL " + comms_.api().library + ")";
}

Status TpGpuExecutor::step(std::span<const StepInput> inputs, std::vector<float>& logits) {
  const int tp = int(ranks_.size());
  std::vector<Status> status(static_cast<size_t>(tp));
  pool_->parallel_for(tp, 1, [&](int64_t b, int64_t end) {
    for (int64_t r = b; r < end; ++r) status[size_t(r)] = ranks_[size_t(r)]->step(inputs, rank_logits_[size_t(r)]);
  });
  for (int r = 0; r < tp; ++r) QW_RETURN_IF_ERROR(status[size_t(r)].context("rank " + std::to_string(r)));
  // Rank r holds columns [r * per, (r + 1) * per) of each row; the last rank's padding
  // past the vocabulary is dropped.
  const size_t V = size_t(config().vocab_size);
  const size_t per = size_t(ranks_[0]->logit_columns());
  const size_t rows = rank_logits_[0].size() / per;
  logits.resize(rows * V);
  for (int r = 0; r < tp; ++r) {
    const size_t c0 = size_t(r) * per;
    if (c0 >= V) break;
    const size_t n = std::min(per, V - c0);
    const float* src = rank_logits_[size_t(r)].data();
    for (size_t i = 0; i < rows; ++i) std::memcpy(logits.data() + i * V + c0, src + i * per, n * sizeof(float));
  }
  return Status::Ok();
}

int64_t TpGpuExecutor::attach_prefix(SeqId seq, std::span<const int32_t> tokens) {
  int64_t n = 0;
  for (auto& r : ranks_) n = r->attach_prefix(seq, tokens);  // identical on every rank
  return n;
}

void TpGpuExecutor::release(SeqId seq) {
  for (auto& r : ranks_) r->release(seq);
}

}  // namespace qw::gpu

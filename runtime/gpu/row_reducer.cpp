#include "gpu/row_reducer.h"

#include <cstring>

namespace qw::gpu {

namespace {
// Mirrors of kernels_templates/sampling.cuh's structs.
constexpr int kMaxCandidatesDevice = 64;  // QW_MAX_CANDIDATES
constexpr int kThreads = 1024;            // QW_REDUCE_THREADS
constexpr int kGreedySlice = 4096;        // QW_GREEDY_SLICE
constexpr int kGreedyThreads = 256;       // QW_GREEDY_THREADS
static_assert(kMaxCandidatesDevice == kMaxCandidates, "sampling.cuh and candidates.h disagree");
struct ReduceRow {
  int logit_row, k;
  float temperature, repetition_penalty;
  int first_penalty, num_penalties;
};
struct ReduceOut {
  int count, pad;
  double logsumexp;
  int ids[kMaxCandidatesDevice];
  float values[kMaxCandidatesDevice];
};
struct GreedyPartial {
  uint32_t key;
  int count;
  float mx;
  int pad;
  double sum;
  int ids[kMaxCandidatesDevice];
  float values[kMaxCandidatesDevice];
};
static_assert(sizeof(GreedyPartial) == 24 + 8 * kMaxCandidatesDevice,
              "GreedyPartial must match QwGreedyPartial");
int64_t greedy_slices(int64_t columns) {
  return (columns + kGreedySlice - 1) / kGreedySlice;
}
static_assert(sizeof(LogitPenalty) == 12 && offsetof(LogitPenalty, delta) == 8,
              "LogitPenalty must match QwLogitPenalty");
static_assert(sizeof(ReduceRow) == 24 && sizeof(ReduceOut) == 16 + 8 * kMaxCandidatesDevice,
              "ReduceRow/ReduceOut must match sampling.cuh");
}  // namespace

Expected<DeviceRowReducer> DeviceRowReducer::create(const KernelModule& module, int64_t max_rows,
                                                    int64_t stride) {
  DeviceRowReducer r;
  QW_ASSIGN_OR_RETURN(r.kernel_, module.get("reduce_rows_to_candidates"));
  r.max_rows_ = max_rows;
  r.stride_ = stride;
  QW_ASSIGN_OR_RETURN(r.scratch_, DeviceBuffer::alloc(size_t(max_rows) * size_t(stride) * 4,
                                                      "the sampling scratch rows"));
  QW_ASSIGN_OR_RETURN(r.rows_dev_,
                      DeviceBuffer::alloc(size_t(max_rows) * sizeof(ReduceRow), "sampling rows"));
  QW_ASSIGN_OR_RETURN(
      r.out_dev_, DeviceBuffer::alloc(size_t(max_rows) * sizeof(ReduceOut), "sampling results"));
  QW_ASSIGN_OR_RETURN(r.rows_host_, PinnedBuffer::alloc(size_t(max_rows) * sizeof(ReduceRow)));
  QW_ASSIGN_OR_RETURN(r.out_host_, PinnedBuffer::alloc(size_t(max_rows) * sizeof(ReduceOut)));
  QW_RETURN_IF_ERROR(r.reserve_penalties(4096));
  if (auto g = module.get("reduce_rows_greedy"); g.ok()) {
    r.greedy_kernel_ = *g;
    QW_ASSIGN_OR_RETURN(
        r.greedy_parts_,
        DeviceBuffer::alloc(size_t(max_rows * greedy_slices(stride)) * sizeof(GreedyPartial),
                            "greedy sampling partials"));
    QW_ASSIGN_OR_RETURN(r.greedy_counters_,
                        DeviceBuffer::alloc(size_t(max_rows) * 4, "greedy sampling counters"));
    QW_CUDA(cudaMemset(r.greedy_counters_.get(), 0,
                       size_t(max_rows) * 4));  // each launch leaves them zero
  }
  return r;
}

Status DeviceRowReducer::reserve_penalties(size_t n) {
  if (n <= pen_capacity_) return Status::Ok();
  const size_t cap = std::max(n, pen_capacity_ * 2);
  QW_ASSIGN_OR_RETURN(pen_dev_,
                      DeviceBuffer::alloc(cap * sizeof(LogitPenalty), "sampling penalties"));
  QW_ASSIGN_OR_RETURN(pen_host_, PinnedBuffer::alloc(cap * sizeof(LogitPenalty)));
  pen_capacity_ = cap;
  return Status::Ok();
}

Status DeviceRowReducer::reduce(cudaStream_t s, const float* logits, int64_t columns,
                                std::span<const int> logit_rows,
                                std::span<const CandidateRequest> requests,
                                std::span<RowCandidates* const> out) {
  const size_t n = logit_rows.size();
  if (n == 0) return Status::Ok();
  if (int64_t(n) > max_rows_ || requests.size() != n || out.size() != n || columns > stride_)
    return Errorf("DeviceRowReducer: %zu rows (at most %lld), %zu requests, %lld columns", n,
                  (long long)max_rows_, requests.size(), (long long)columns);
  size_t npen = 0;
  bool greedy = greedy_kernel_ != nullptr;
  for (const auto& r : requests) {
    npen += r.penalties.size();
    greedy = greedy && r.k == 1 && r.penalties.empty();
  }
  QW_RETURN_IF_ERROR(reserve_penalties(npen));
  auto* rows = rows_host_.as<ReduceRow>();
  auto* pens = pen_host_.as<LogitPenalty>();
  size_t at = 0;
  for (size_t j = 0; j < n; ++j) {
    const CandidateRequest& r = requests[j];
    if (r.k <= 0 || r.k > kMaxCandidates)
      return Errorf("DeviceRowReducer: k %d outside 1..%d", r.k, kMaxCandidates);
    rows[j] = ReduceRow{logit_rows[j],        r.k,     r.temperature,
                        r.repetition_penalty, int(at), int(r.penalties.size())};
    if (!r.penalties.empty())
      std::memcpy(pens + at, r.penalties.data(), r.penalties.size() * sizeof(LogitPenalty));
    at += r.penalties.size();
  }
  QW_CUDA(cudaMemcpyAsync(rows_dev_.get(), rows, n * sizeof(ReduceRow), cudaMemcpyHostToDevice, s));
  if (npen)
    QW_CUDA(cudaMemcpyAsync(pen_dev_.get(), pens, npen * sizeof(LogitPenalty),
                            cudaMemcpyHostToDevice, s));
  if (greedy) {
    QW_RETURN_IF_ERROR(launch(greedy_kernel_, dim3(unsigned(greedy_slices(columns)), unsigned(n)),
                              dim3(kGreedyThreads), 0, s, logits, static_cast<long long>(stride_),
                              static_cast<int>(columns), rows_dev_.as<const ReduceRow>(),
                              greedy_parts_.as<GreedyPartial>(), greedy_counters_.as<int>(),
                              out_dev_.as<ReduceOut>()));
  } else {
    QW_RETURN_IF_ERROR(launch(kernel_, dim3(unsigned(n)), dim3(kThreads), 0, s, logits,
                              static_cast<long long>(stride_), static_cast<int>(columns),
                              rows_dev_.as<const ReduceRow>(), pen_dev_.as<const LogitPenalty>(),
                              scratch_.as<float>(), out_dev_.as<ReduceOut>()));
  }
  QW_CUDA(cudaMemcpyAsync(out_host_.get(), out_dev_.get(), n * sizeof(ReduceOut),
                          cudaMemcpyDeviceToHost, s));
  QW_CUDA(cudaStreamSynchronize(s));
  const auto* res = out_host_.as<const ReduceOut>();
  for (size_t j = 0; j < n; ++j) {
    RowCandidates& c = *out[j];
    c.logsumexp = res[j].logsumexp;
    c.complete = res[j].count >= 0;
    const int m = c.complete ? res[j].count : 0;
    c.ids.assign(res[j].ids, res[j].ids + m);
    c.values.assign(res[j].values, res[j].values + m);
  }
  return Status::Ok();
}

}  // namespace qw::gpu

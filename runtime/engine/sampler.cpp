#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <unordered_map>

namespace qw {

namespace {
// Below this temperature sampling is greedy (vLLM's _SAMPLING_EPS).
constexpr double kGreedyTemperature = 1e-5;
constexpr float kMasked = -std::numeric_limits<float>::infinity();

// First maximum (lowest id on ties). Eight lanes so the compiler keeps it in vector
// registers: this runs over the whole vocabulary for every greedy token.
int32_t argmax(const std::vector<float>& v) {
  const size_t n = v.size();
  if (n == 0) return 0;
  float lane[8];
  for (float& l : lane) l = v[0];
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] = v[i + size_t(j)] > lane[j] ? v[i + size_t(j)] : lane[j];
  float mx = lane[0];
  for (float l : lane) mx = l > mx ? l : mx;
  for (; i < n; ++i) mx = v[i] > mx ? v[i] : mx;
  for (size_t k = 0; k < n; ++k)
    if (v[k] == mx) return int32_t(k);
  return int32_t(std::max_element(v.begin(), v.end()) - v.begin());  // all NaN
}

// The k-th largest value (duplicates counted), in one pass with a k-entry min-heap: most
// values lose a single comparison against the heap's minimum.
float kth_largest(const std::vector<float>& v, size_t k, std::vector<float>& heap) {
  heap.assign(v.begin(), v.begin() + long(k));
  std::make_heap(heap.begin(), heap.end(), std::greater<>());
  for (size_t i = k; i < v.size(); ++i) {
    if (!(v[i] > heap.front())) continue;
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    heap.back() = v[i];
    std::push_heap(heap.begin(), heap.end(), std::greater<>());
  }
  return heap.front();
}
}  // namespace

SamplingParams SamplingParams::from_defaults(const GenerationDefaults& g) {
  SamplingParams p;
  p.temperature = g.do_sample ? g.temperature : 0.0;
  p.top_p = g.top_p;
  p.top_k = g.top_k;
  p.repetition_penalty = g.repetition_penalty;
  return p;
}

Status SamplingParams::validate() const {
  if (!(temperature >= 0.0) || !std::isfinite(temperature))
    return Errorf("temperature %g: must be >= 0", temperature);
  if (!(top_p > 0.0 && top_p <= 1.0)) return Errorf("top_p %g: must be in (0, 1]", top_p);
  if (!(repetition_penalty > 0.0) || !std::isfinite(repetition_penalty))
    return Errorf("repetition_penalty %g: must be > 0", repetition_penalty);
  if (!std::isfinite(presence_penalty) || !std::isfinite(frequency_penalty))
    return Status::Error("presence_penalty / frequency_penalty must be finite");
  return Status::Ok();
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

void Sampler::apply_penalties(std::span<const int32_t> context,
                              std::span<const int32_t> generated) {
  const int64_t V = int64_t(work_.size());
  if (params_.repetition_penalty != 1.0) {
    // HF gathers then scatters, so a token repeated in the context is penalised once.
    std::vector<int32_t> ids(context.begin(), context.end());
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    const float p = float(params_.repetition_penalty);
    for (int32_t id : ids) {
      if (id < 0 || id >= V) continue;
      float& x = work_[size_t(id)];
      x = x < 0 ? x * p : x / p;
    }
  }
  if (params_.presence_penalty != 0.0 || params_.frequency_penalty != 0.0) {
    std::unordered_map<int32_t, int64_t> counts;
    for (int32_t id : generated) ++counts[id];
    for (auto [id, n] : counts) {
      if (id < 0 || id >= V) continue;
      work_[size_t(id)] -= float(params_.frequency_penalty * double(n) + params_.presence_penalty);
    }
  }
}

void Sampler::select_top_k() {
  // cand_: ids still in play, ascending; everything else is masked in work_.
  const size_t V = work_.size();
  cand_.clear();
  cval_.clear();
  if (params_.top_k > 0 && size_t(params_.top_k) < V) {
    const float kth = kth_largest(work_, size_t(params_.top_k), heap_);
    for (size_t i = 0; i < V; ++i) {
      if (work_[i] < kth) {
        work_[i] = kMasked;  // ties with the k-th stay, as torch.topk + <
      } else if (work_[i] != kMasked) {
        cand_.push_back(int32_t(i));
        cval_.push_back(work_[i]);
      }
    }
    return;
  }
  for (size_t i = 0; i < V; ++i)
    if (work_[i] != kMasked) {
      cand_.push_back(int32_t(i));
      cval_.push_back(work_[i]);
    }
}

void Sampler::select_top_p() {
  if (params_.top_p >= 1.0 || cand_.size() <= 1) return;
  // HF removes, in ascending order, tokens whose cumulative probability is <= 1 - top_p.
  // Equivalently a token stays iff the mass ranked above it is < top_p: decided from the
  // top down, so only the tokens around the cut are sorted, not the whole vocabulary.
  float mx = kMasked;
  for (float x : cval_) mx = std::max(mx, x);
  double total = 0.0;
  prob_.resize(cand_.size());
  for (size_t j = 0; j < cand_.size(); ++j) {
    prob_[j] = std::exp(double(cval_[j]) - double(mx));
    total += prob_[j];
  }
  const double target = params_.top_p * total;
  // Buckets by distance below the maximum logit (e^-40 of the top is nothing); the bucket
  // where the mass from the top crosses the target is sorted, the rest decided whole.
  constexpr int kBuckets = 1024;
  constexpr double kRange = 40.0;
  auto bucket_of = [&](float x) {
    const double d = (double(mx) - double(x)) * (kBuckets / kRange);
    return d >= kBuckets - 1 ? kBuckets - 1 : int(d);
  };
  std::vector<double>& mass = bucket_mass_;
  mass.assign(kBuckets, 0.0);
  for (size_t j = 0; j < cand_.size(); ++j) mass[size_t(bucket_of(cval_[j]))] += prob_[j];
  int cut = kBuckets - 1;
  double above = 0.0;  // mass of the buckets before `cut`
  for (int b = 0; b < kBuckets; ++b) {
    if (above + mass[size_t(b)] >= target) {
      cut = b;
      break;
    }
    above += mass[size_t(b)];
  }
  // In the cut bucket: most likely first; among equal logits the higher id ranks above
  // (HF's stable ascending sort puts the lower id first, so it is removed first).
  order_.clear();
  for (size_t j = 0; j < cand_.size(); ++j)
    if (bucket_of(cval_[j]) == cut) order_.push_back(int32_t(j));
  std::sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) {
    const float xa = cval_[size_t(a)], xb = cval_[size_t(b)];
    return xa > xb || (xa == xb && a > b);
  });
  std::vector<char>& keep_in_cut = keep_in_cut_;
  keep_in_cut.assign(cand_.size(), 0);
  for (int32_t j : order_) {
    if (!(above < target)) break;
    keep_in_cut[size_t(j)] = 1;
    above += prob_[size_t(j)];
  }
  size_t kept = 0;
  for (size_t j = 0; j < cand_.size(); ++j) {
    const int b = bucket_of(cval_[j]);
    if (b < cut || (b == cut && keep_in_cut[j])) {
      cval_[kept] = cval_[j];
      cand_[kept++] = cand_[j];
    } else if (!work_.empty()) {
      work_[size_t(cand_[j])] = kMasked;
    }
  }
  cand_.resize(kept);
  cval_.resize(kept);
}

int32_t Sampler::draw() {
  // Inverse CDF over what is left, in id order, with a 53-bit uniform in [0, 1).
  float mx = kMasked;
  for (float x : cval_) mx = std::max(mx, x);
  prob_.resize(cand_.size());
  double sum = 0.0;
  for (size_t j = 0; j < cand_.size(); ++j) {
    prob_[j] = std::exp(double(cval_[j]) - double(mx));
    sum += prob_[j];
  }
  const double u = double(rng_() >> 11) * 0x1.0p-53 * sum;
  double cum = 0.0;
  for (size_t j = 0; j < cand_.size(); ++j) {
    cum += prob_[j];
    if (u < cum) return cand_[j];
  }
  // Rounding left u past the last mass: the most likely (lowest id among equals).
  size_t best = 0;
  for (size_t j = 1; j < cand_.size(); ++j)
    if (cval_[j] > cval_[best]) best = j;
  return cand_.empty() ? 0 : cand_[best];
}

void Sampler::fill_logprobs(SampleResult& out) const {
  const std::vector<float>& base = logprob_base_;
  const float mx = *std::max_element(base.begin(), base.end());
  double sum = 0.0;
  for (float x : base) sum += std::exp(double(x) - double(mx));
  const double lse = double(mx) + std::log(sum);
  out.logprob = float(double(base[size_t(out.token)]) - lse);
  if (params_.logprobs <= 0) return;
  const size_t n = std::min(size_t(params_.logprobs), base.size());
  std::vector<int32_t> ids(base.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + long(n), ids.end(), [&](int32_t a, int32_t b) {
    return base[size_t(a)] > base[size_t(b)] || (base[size_t(a)] == base[size_t(b)] && a < b);
  });
  out.top.clear();
  for (size_t i = 0; i < n; ++i)
    out.top.push_back(TokenLogprob{ids[i], float(double(base[size_t(ids[i])]) - lse)});
}

SampleResult Sampler::sample(std::span<const float> logits, std::span<const int32_t> context,
                             std::span<const int32_t> generated) {
  work_.assign(logits.begin(), logits.end());
  apply_penalties(context, generated);
  SampleResult out;
  const bool greedy = params_.temperature < kGreedyTemperature;
  if (!greedy) {
    const float t = float(params_.temperature);
    for (float& x : work_) x /= t;
  }
  if (params_.logprobs >= 0) logprob_base_ = work_;
  if (greedy) {
    out.token = argmax(work_);
  } else {
    select_top_k();
    select_top_p();
    out.token = draw();
  }
  if (params_.logprobs >= 0) fill_logprobs(out);
  return out;
}

CandidateRequest Sampler::candidate_request(std::span<const int32_t> context,
                                           std::span<const int32_t> generated,
                                           std::vector<LogitPenalty>& storage) const {
  CandidateRequest req;
  const bool greedy = params_.temperature < kGreedyTemperature;
  const int64_t want_logprobs = std::max<int64_t>(params_.logprobs, 0);
  const int64_t k = std::max<int64_t>(greedy ? 1 : params_.top_k, want_logprobs);
  if ((!greedy && params_.top_k <= 0) || k > kMaxCandidates) return req;  // whole row
  req.k = int32_t(k);
  req.temperature = greedy ? 1.f : float(params_.temperature);
  req.repetition_penalty = float(params_.repetition_penalty);
  storage.clear();
  if (params_.repetition_penalty != 1.0) {
    for (int32_t id : context) storage.push_back(LogitPenalty{id, 1, 0.f});
    std::sort(storage.begin(), storage.end(),
              [](const LogitPenalty& a, const LogitPenalty& b) { return a.id < b.id; });
    storage.erase(std::unique(storage.begin(), storage.end(),
                              [](const LogitPenalty& a, const LogitPenalty& b) { return a.id == b.id; }),
                  storage.end());
  }
  if (params_.presence_penalty != 0.0 || params_.frequency_penalty != 0.0) {
    std::vector<int32_t> ids(generated.begin(), generated.end());
    std::sort(ids.begin(), ids.end());
    const size_t with_repeat = storage.size();
    for (size_t i = 0; i < ids.size();) {
      size_t j = i;
      while (j < ids.size() && ids[j] == ids[i]) ++j;
      const float delta = float(params_.frequency_penalty * double(j - i) + params_.presence_penalty);
      auto it = std::lower_bound(storage.begin(), storage.begin() + long(with_repeat), ids[i],
                                 [](const LogitPenalty& e, int32_t id) { return e.id < id; });
      if (it != storage.begin() + long(with_repeat) && it->id == ids[i]) it->delta = delta;
      else storage.push_back(LogitPenalty{ids[i], 0, delta});
      i = j;
    }
  }
  req.penalties = storage;
  return req;
}

SampleResult Sampler::sample_candidates(const RowCandidates& c) {
  SampleResult out;
  work_.clear();  // no full row this time (last_processed() is empty)
  if (c.ids.empty()) return out;
  const bool greedy = params_.temperature < kGreedyTemperature;
  if (greedy) {
    out.token = c.ids[0];
  } else {
    // Top-k: every candidate >= the k-th (the reduction may hold more, for logprobs).
    size_t n = c.ids.size();
    if (params_.top_k > 0 && size_t(params_.top_k) < n) {
      const float kth = c.values[size_t(params_.top_k) - 1];
      n = size_t(params_.top_k);
      while (n < c.ids.size() && c.values[n] >= kth) ++n;
    }
    order_.resize(n);
    std::iota(order_.begin(), order_.end(), 0);
    std::sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) { return c.ids[size_t(a)] < c.ids[size_t(b)]; });
    cand_.resize(n);
    cval_.resize(n);
    for (size_t j = 0; j < n; ++j) {
      cand_[j] = c.ids[size_t(order_[j])];
      cval_[j] = c.values[size_t(order_[j])];
    }
    select_top_p();
    out.token = draw();
  }
  if (params_.logprobs >= 0) {
    for (size_t j = 0; j < c.ids.size(); ++j)
      if (c.ids[j] == out.token) out.logprob = float(double(c.values[j]) - c.logsumexp);
    out.top.clear();
    const size_t n = std::min(size_t(params_.logprobs), c.ids.size());
    for (size_t j = 0; j < n; ++j)
      out.top.push_back(TokenLogprob{c.ids[j], float(double(c.values[j]) - c.logsumexp)});
  }
  return out;
}

}  // namespace qw

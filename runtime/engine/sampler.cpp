#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

namespace qw {

namespace {
// Below this temperature sampling is greedy (vLLM's _SAMPLING_EPS).
constexpr double kGreedyTemperature = 1e-5;
constexpr float kMasked = -std::numeric_limits<float>::infinity();

int32_t argmax(const std::vector<float>& v) {
  return int32_t(std::max_element(v.begin(), v.end()) - v.begin());  // first maximum
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

void Sampler::apply_top_k() {
  const int64_t V = int64_t(work_.size());
  if (params_.top_k <= 0 || params_.top_k >= V) return;
  std::vector<float> tmp(work_);
  std::nth_element(tmp.begin(), tmp.begin() + (params_.top_k - 1), tmp.end(), std::greater<>());
  const float kth = tmp[size_t(params_.top_k - 1)];
  for (float& x : work_)
    if (x < kth) x = kMasked;
}

void Sampler::apply_top_p() {
  if (params_.top_p >= 1.0) return;
  // Only tokens still in play: masked ones have probability 0, add nothing to the
  // cumulative sum, and are removed already (after top-k this sorts k entries, not V).
  order_.clear();
  for (size_t i = 0; i < work_.size(); ++i)
    if (work_[i] != kMasked) order_.push_back(int32_t(i));
  const size_t V = order_.size();
  if (V == 0) return;
  // Ascending by logit, as HF sorts; equal logits keep id order.
  std::stable_sort(order_.begin(), order_.end(),
                   [&](int32_t a, int32_t b) { return work_[size_t(a)] < work_[size_t(b)]; });
  const float mx = work_[size_t(order_.back())];
  double sum = 0.0;
  for (int32_t id : order_) sum += std::exp(double(work_[size_t(id)]) - double(mx));
  const float threshold = float(1.0 - params_.top_p);
  float cum = 0.0f;
  for (size_t i = 0; i + 1 < V; ++i) {  // the most likely token is always kept
    const int32_t id = order_[i];
    cum += float(std::exp(double(work_[size_t(id)]) - double(mx)) / sum);
    if (cum <= threshold)
      work_[size_t(id)] = kMasked;
    else
      break;  // cum only grows: nothing later is removed
  }
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
    apply_top_k();
    apply_top_p();
    const float mx = *std::max_element(work_.begin(), work_.end());
    double sum = 0.0;
    for (float x : work_) sum += std::exp(double(x) - double(mx));
    // Inverse CDF in id order with a 53-bit uniform in [0, 1).
    const double u = double(rng_() >> 11) * 0x1.0p-53 * sum;
    double cum = 0.0;
    out.token = argmax(work_);  // fallback if rounding leaves u past the last mass
    for (size_t i = 0; i < work_.size(); ++i) {
      if (work_[i] == kMasked) continue;
      cum += std::exp(double(work_[i]) - double(mx));
      if (u < cum) {
        out.token = int32_t(i);
        break;
      }
    }
  }
  if (params_.logprobs >= 0) fill_logprobs(out);
  return out;
}

}  // namespace qw

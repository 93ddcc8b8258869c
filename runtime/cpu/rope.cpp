#include "cpu/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace qw::cpu {

namespace {

// transformers: base ** (arange(0, dim, 2).float() / dim), all in fp32.
std::vector<float> pos_freqs(double base, int64_t dim) {
  std::vector<float> f(size_t(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float e = float(2 * i) / float(dim);
    f[size_t(i)] = float(std::pow(base, double(e)));
  }
  return f;
}

// YaRN (_compute_yarn_parameters): interpolate low frequencies by `factor`, keep high
// ones, blend linearly in between; attention_factor defaults to 0.1 ln(factor) + 1.
RopeParams yarn(const ModelConfig& cfg, int64_t dim) {
  const RopeScalingConfig& rs = cfg.rope_scaling;
  const double base = cfg.rope_theta;
  const double factor = rs.factor;
  const int64_t orig_max = rs.original_max_position_embeddings > 0
                               ? rs.original_max_position_embeddings
                               : cfg.max_position_embeddings;
  double attention_factor = rs.attention_factor;
  if (attention_factor <= 0.0)
    attention_factor = factor <= 1.0 ? 1.0 : 0.1 * std::log(factor) + 1.0;
  const double beta_fast = rs.beta_fast > 0 ? rs.beta_fast : 32.0;
  const double beta_slow = rs.beta_slow > 0 ? rs.beta_slow : 1.0;

  auto correction_dim = [&](double rotations) {
    return (double(dim) * std::log(double(orig_max) / (rotations * 2.0 * std::numbers::pi))) /
           (2.0 * std::log(base));
  };
  double low = correction_dim(beta_fast);
  double high = correction_dim(beta_slow);
  if (rs.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, double(dim - 1));
  if (low == high) high += 0.001;  // transformers' guard against a zero-width ramp

  const std::vector<float> pf = pos_freqs(base, dim);
  RopeParams p;
  p.head_dim = dim;
  p.attention_scaling = float(attention_factor);
  p.inv_freq.resize(pf.size());
  const float flow = float(low), fspan = float(high - low), ffactor = float(factor);
  for (size_t i = 0; i < pf.size(); ++i) {
    const float extrapolation = 1.0f / pf[i];
    const float interpolation = 1.0f / (ffactor * pf[i]);
    const float ramp = std::clamp((float(i) - flow) / fspan, 0.0f, 1.0f);
    const float extra_factor = 1.0f - ramp;
    p.inv_freq[i] = interpolation * (1.0f - extra_factor) + extrapolation * extra_factor;
  }
  return p;
}

}  // namespace

Expected<RopeParams> compute_rope_params(const ModelConfig& cfg) {
  const int64_t dim = cfg.head_dim;
  if (dim <= 0 || dim % 2 != 0)
    return Errorf("config.head_dim = %lld: RoPE needs a positive even head dimension",
                  (long long)dim);
  const std::string& type = cfg.rope_scaling.rope_type;
  if (type == "yarn") {
    if (cfg.rope_scaling.factor <= 0)
      return Errorf("config.rope_scaling.factor = %g: must be positive", cfg.rope_scaling.factor);
    return yarn(cfg, dim);
  }
  RopeParams p;
  p.head_dim = dim;
  const std::vector<float> pf = pos_freqs(cfg.rope_theta, dim);
  p.inv_freq.resize(pf.size());
  for (size_t i = 0; i < pf.size(); ++i) p.inv_freq[i] = 1.0f / pf[i];
  if (type.empty() || type == "default" || type == "dynamic") return p;
  if (type == "linear") {
    if (cfg.rope_scaling.factor <= 0)
      return Errorf("config.rope_scaling.factor = %g: must be positive", cfg.rope_scaling.factor);
    for (float& f : p.inv_freq) f /= float(cfg.rope_scaling.factor);
    return p;
  }
  return Status::Error("config.rope_scaling.rope_type '" + type +
                       "' is not supported by the CPU runtime (default, linear, dynamic, yarn)");
}

void rope_cos_sin(const RopeParams& p, int64_t pos, float* cos_out, float* sin_out) {
  const float fpos = float(pos);
  for (size_t i = 0; i < p.inv_freq.size(); ++i) {
    const float angle = p.inv_freq[i] * fpos;
    cos_out[i] = float(std::cos(double(angle))) * p.attention_scaling;
    sin_out[i] = float(std::sin(double(angle))) * p.attention_scaling;
  }
}

void apply_rope(float* v, int64_t heads, int64_t head_dim, const float* cos, const float* sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* x = v + h * head_dim;
    for (int64_t j = 0; j < half; ++j) {
      const float x1 = x[j], x2 = x[j + half];
      x[j] = x1 * cos[j] - x2 * sin[j];
      x[j + half] = x2 * cos[j] + x1 * sin[j];
    }
  }
}

}  // namespace qw::cpu

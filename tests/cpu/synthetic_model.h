// Test helpers: a small random Qwen2 in HF's layout (values pre-rounded to the storage
// dtype, held as double), its packing into the artifact's fused / TP-split layouts as
// tensor_names.h documents them, and a naive float64 forward to compare against.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <random>
#include <vector>

#include "core/half.h"
#include "core/model_config.h"
#include "cpu/model_weights.h"

namespace qw::test {

using Mat = std::vector<double>;  // row-major

struct HfLayer {
  Mat q, k, v, qb, kb, vb, o, gate, up, down, in_norm, post_norm;
};
struct HfModel {
  ModelConfig cfg;
  DType dtype = DType::F16;
  Mat embed, lm_head, final_norm;  // lm_head empty when tied
  std::vector<HfLayer> layers;
};

inline double round_to(DType t, double x) {
  switch (t) {
    case DType::F16:
      return f16_to_f32(f32_to_f16(float(x)));
    case DType::BF16:
      return bf16_to_f32(f32_to_bf16(float(x)));
    default:
      return float(x);
  }
}

inline ModelConfig small_config(bool tied) {
  ModelConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 301;  // not a multiple of 2 or 4: exercises the padded lm_head slice
  c.max_position_embeddings = 256;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = tied;
  return c;
}

inline HfModel random_model(const ModelConfig& cfg, DType dtype, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  auto mat = [&](int64_t n, double scale, double offset = 0.0) {
    Mat m(static_cast<size_t>(n));
    for (double& x : m) x = round_to(dtype, offset + scale * nd(rng));
    return m;
  };
  HfModel m;
  m.cfg = cfg;
  m.dtype = dtype;
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, hd = cfg.head_dim;
  const int64_t qd = cfg.num_attention_heads * hd, kd = cfg.num_key_value_heads * hd;
  const double sh = 1.0 / std::sqrt(double(H));
  m.embed = mat(cfg.vocab_size * H, 1.0);
  if (!cfg.tie_word_embeddings) m.lm_head = mat(cfg.vocab_size * H, sh);
  m.final_norm = mat(H, 0.1, 1.0);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    HfLayer L;
    L.q = mat(qd * H, sh);
    L.k = mat(kd * H, sh);
    L.v = mat(kd * H, sh);
    L.qb = mat(qd, 0.5);
    L.kb = mat(kd, 0.5);
    L.vb = mat(kd, 0.5);
    L.o = mat(H * qd, 1.0 / std::sqrt(double(qd)));
    L.gate = mat(I * H, sh);
    L.up = mat(I * H, sh);
    L.down = mat(H * I, 1.0 / std::sqrt(double(I)));
    L.in_norm = mat(H, 0.1, 1.0);
    L.post_norm = mat(H, 0.1, 1.0);
    m.layers.push_back(std::move(L));
  }
  return m;
}

// ---- packing into the artifact layouts ----------------------------------------------

inline TpPlan make_plan(const ModelConfig& cfg, int64_t tp) {
  TpPlan p;
  p.tp = tp;
  p.q_heads_per_rank = cfg.num_attention_heads / tp;
  p.kv_heads_per_rank = tp <= cfg.num_key_value_heads ? cfg.num_key_value_heads / tp : 1;
  p.intermediate_per_rank = cfg.intermediate_size / tp;
  p.vocab_per_rank = (cfg.vocab_size + tp - 1) / tp;
  return p;
}

class PackedModel {
 public:
  PackedModel(const HfModel& m, int64_t tp) : plan_(make_plan(m.cfg, tp)), dtype_(m.dtype) {
    const ModelConfig& c = m.cfg;
    const int64_t H = c.hidden_size, hd = c.head_dim, I_r = plan_.intermediate_per_rank;
    const int64_t qh_r = plan_.q_heads_per_rank, kvh_r = plan_.kv_heads_per_rank;
    const int64_t group = c.num_attention_heads / c.num_key_value_heads;
    w_.embed = store("embed", m.embed, c.vocab_size, H);
    w_.final_norm = as_float(m.final_norm);
    const int64_t V_r = tp == 1 ? c.vocab_size : plan_.vocab_per_rank;
    const Mat& head = c.tie_word_embeddings ? m.embed : m.lm_head;
    for (int64_t r = 0; r < tp; ++r) {
      if (tp == 1 && c.tie_word_embeddings) {
        w_.lm_head.push_back(w_.embed);
        continue;
      }
      Mat s(size_t(V_r * H), 0.0);
      for (int64_t i = 0; i < V_r && r * V_r + i < c.vocab_size; ++i)
        for (int64_t k = 0; k < H; ++k) s[size_t(i * H + k)] = head[size_t((r * V_r + i) * H + k)];
      w_.lm_head.push_back(store("lm_head", s, V_r, H));
    }
    for (const HfLayer& L : m.layers) {
      cpu::LayerWeights lw;
      lw.input_norm = as_float(L.in_norm);
      lw.post_norm = as_float(L.post_norm);
      for (int64_t r = 0; r < tp; ++r) {
        const int64_t kv0 = tp <= c.num_key_value_heads ? r * kvh_r : (r * qh_r) / group;
        Mat qkv, bias;
        auto take_rows = [&](const Mat& src, const Mat& b, int64_t row0, int64_t n) {
          for (int64_t i = row0; i < row0 + n; ++i) {
            qkv.insert(qkv.end(), src.begin() + i * H, src.begin() + (i + 1) * H);
            bias.push_back(b[size_t(i)]);
          }
        };
        take_rows(L.q, L.qb, r * qh_r * hd, qh_r * hd);
        take_rows(L.k, L.kb, kv0 * hd, kvh_r * hd);
        take_rows(L.v, L.vb, kv0 * hd, kvh_r * hd);
        cpu::RankLayerWeights R;
        R.qkv = store("qkv", qkv, (qh_r + 2 * kvh_r) * hd, H);
        R.qkv_bias = as_float(bias);
        R.o_proj =
            store("o_proj", cols(L.o, H, c.num_attention_heads * hd, r * qh_r * hd, qh_r * hd), H,
                  qh_r * hd);
        Mat gu(L.gate.begin() + r * I_r * H, L.gate.begin() + (r + 1) * I_r * H);
        gu.insert(gu.end(), L.up.begin() + r * I_r * H, L.up.begin() + (r + 1) * I_r * H);
        R.gate_up = store("gate_up", gu, 2 * I_r, H);
        R.down = store("down", cols(L.down, H, c.intermediate_size, r * I_r, I_r), H, I_r);
        lw.ranks.push_back(std::move(R));
      }
      w_.layers.push_back(std::move(lw));
    }
  }
  PackedModel(const PackedModel&) = delete;
  PackedModel& operator=(const PackedModel&) = delete;

  const TpPlan& plan() const { return plan_; }
  const cpu::ModelWeights& weights() const { return w_; }

 private:
  static Mat cols(const Mat& m, int64_t rows, int64_t ncols, int64_t c0, int64_t n) {
    Mat out;
    for (int64_t i = 0; i < rows; ++i)
      out.insert(out.end(), m.begin() + i * ncols + c0, m.begin() + i * ncols + c0 + n);
    return out;
  }
  static std::vector<float> as_float(const Mat& m) {
    return std::vector<float>(m.begin(), m.end());
  }
  cpu::WeightMatrix store(const char* name, const Mat& m, int64_t rows, int64_t ncols) {
    auto& buf = buffers_.emplace_back(size_t(rows * ncols) * dtype_size(dtype_));
    for (size_t i = 0; i < m.size(); ++i) {
      if (dtype_ == DType::F32) {
        const float f = float(m[i]);
        std::memcpy(buf.data() + i * 4, &f, 4);
      } else {
        const uint16_t h =
            dtype_ == DType::F16 ? f32_to_f16(float(m[i])) : f32_to_bf16(float(m[i]));
        std::memcpy(buf.data() + i * 2, &h, 2);
      }
    }
    return cpu::WeightMatrix{name, dtype_, buf.data(), rows, ncols};
  }

  TpPlan plan_;
  DType dtype_;
  cpu::ModelWeights w_;
  std::vector<std::vector<uint8_t>> buffers_;  // vectors of vectors: data() stays put
};

// ---- naive float64 forward ------------------------------------------------------------

// Inverse frequencies and cos/sin scaling, in double, straight from the formulas.
inline std::vector<double> ref_inv_freq(const ModelConfig& c, double* scaling) {
  const int64_t d = c.head_dim;
  std::vector<double> inv(size_t(d / 2));
  for (int64_t i = 0; i < d / 2; ++i)
    inv[size_t(i)] = 1.0 / std::pow(c.rope_theta, double(2 * i) / d);
  *scaling = 1.0;
  const auto& rs = c.rope_scaling;
  if (rs.rope_type == "linear")
    for (double& f : inv) f /= rs.factor;
  if (rs.rope_type == "yarn") {
    const double orig = double(rs.original_max_position_embeddings);
    auto cdim = [&](double rot) {
      return d * std::log(orig / (rot * 2 * std::numbers::pi)) / (2 * std::log(c.rope_theta));
    };
    double lo = std::max(0.0, std::floor(cdim(rs.beta_fast)));
    double hi = std::min(double(d - 1), std::ceil(cdim(rs.beta_slow)));
    if (lo == hi) hi += 0.001;
    for (int64_t i = 0; i < d / 2; ++i) {
      const double ramp = std::clamp((double(i) - lo) / (hi - lo), 0.0, 1.0);
      const double extra = 1.0 - ramp;
      inv[size_t(i)] = inv[size_t(i)] / rs.factor * (1 - extra) + inv[size_t(i)] * extra;
    }
    *scaling = 0.1 * std::log(rs.factor) + 1.0;
  }
  return inv;
}

// Logits of every position of `tokens` (one causal pass), [n][vocab].
inline std::vector<std::vector<double>> reference_logits(const HfModel& m,
                                                         const std::vector<int32_t>& tokens) {
  const ModelConfig& c = m.cfg;
  const int64_t n = int64_t(tokens.size()), H = c.hidden_size, hd = c.head_dim;
  const int64_t qh = c.num_attention_heads, kvh = c.num_key_value_heads, I = c.intermediate_size;
  double scaling;
  const std::vector<double> inv = ref_inv_freq(c, &scaling);
  auto matvec = [](const Mat& w, const std::vector<double>& x, int64_t rows) {
    std::vector<double> y(size_t(rows), 0.0);
    const size_t K = x.size();
    for (int64_t i = 0; i < rows; ++i)
      for (size_t k = 0; k < K; ++k) y[size_t(i)] += w[size_t(i) * K + k] * x[k];
    return y;
  };
  auto norm = [&](const std::vector<double>& x, const Mat& w) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double s = 1.0 / std::sqrt(ss / double(x.size()) + c.rms_norm_eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = w[i] * x[i] * s;
    return y;
  };
  auto rope = [&](std::vector<double>& v, int64_t heads, int64_t pos) {
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t j = 0; j < hd / 2; ++j) {
        const double a = double(pos) * inv[size_t(j)];
        const double cs = std::cos(a) * scaling, sn = std::sin(a) * scaling;
        double& x1 = v[size_t(h * hd + j)];
        double& x2 = v[size_t(h * hd + j + hd / 2)];
        const double y1 = x1 * cs - x2 * sn, y2 = x2 * cs + x1 * sn;
        x1 = y1;
        x2 = y2;
      }
  };
  std::vector<std::vector<double>> h(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t)
    h[size_t(t)].assign(m.embed.begin() + tokens[size_t(t)] * H,
                        m.embed.begin() + (tokens[size_t(t)] + 1) * H);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const HfLayer& L = m.layers[size_t(l)];
    const bool sliding = c.use_sliding_window && c.sliding_window > 0 && l >= c.max_window_layers;
    std::vector<std::vector<double>> q(static_cast<size_t>(n)), k(static_cast<size_t>(n)),
        v(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) {
      const auto x = norm(h[size_t(t)], L.in_norm);
      q[size_t(t)] = matvec(L.q, x, qh * hd);
      k[size_t(t)] = matvec(L.k, x, kvh * hd);
      v[size_t(t)] = matvec(L.v, x, kvh * hd);
      for (int64_t i = 0; i < qh * hd; ++i) q[size_t(t)][size_t(i)] += L.qb[size_t(i)];
      for (int64_t i = 0; i < kvh * hd; ++i) {
        k[size_t(t)][size_t(i)] += L.kb[size_t(i)];
        v[size_t(t)][size_t(i)] += L.vb[size_t(i)];
      }
      rope(q[size_t(t)], qh, t);
      rope(k[size_t(t)], kvh, t);
    }
    for (int64_t t = 0; t < n; ++t) {
      std::vector<double> att(size_t(qh * hd), 0.0);
      for (int64_t hh = 0; hh < qh; ++hh) {
        const int64_t g = hh / (qh / kvh);
        const int64_t first = sliding ? std::max<int64_t>(0, t - c.sliding_window + 1) : 0;
        std::vector<double> s;
        double mx = -1e300;
        for (int64_t u = first; u <= t; ++u) {
          double d = 0;
          for (int64_t j = 0; j < hd; ++j)
            d += q[size_t(t)][size_t(hh * hd + j)] * k[size_t(u)][size_t(g * hd + j)];
          s.push_back(d / std::sqrt(double(hd)));
          mx = std::max(mx, s.back());
        }
        double sum = 0;
        for (double& x : s) sum += (x = std::exp(x - mx));
        for (int64_t u = first; u <= t; ++u)
          for (int64_t j = 0; j < hd; ++j)
            att[size_t(hh * hd + j)] +=
                s[size_t(u - first)] / sum * v[size_t(u)][size_t(g * hd + j)];
      }
      const auto o = matvec(L.o, att, H);
      for (int64_t i = 0; i < H; ++i) h[size_t(t)][size_t(i)] += o[size_t(i)];
    }
    for (int64_t t = 0; t < n; ++t) {
      const auto x = norm(h[size_t(t)], L.post_norm);
      const auto g = matvec(L.gate, x, I), u = matvec(L.up, x, I);
      std::vector<double> a(static_cast<size_t>(I));
      for (int64_t i = 0; i < I; ++i)
        a[size_t(i)] = g[size_t(i)] / (1 + std::exp(-g[size_t(i)])) * u[size_t(i)];
      const auto d = matvec(L.down, a, H);
      for (int64_t i = 0; i < H; ++i) h[size_t(t)][size_t(i)] += d[size_t(i)];
    }
  }
  std::vector<std::vector<double>> out;
  const Mat& head = c.tie_word_embeddings ? m.embed : m.lm_head;
  for (int64_t t = 0; t < n; ++t)
    out.push_back(matvec(head, norm(h[size_t(t)], m.final_norm), c.vocab_size));
  return out;
}

// max |a - b| / max |b| over one row.
inline double rel_err(const float* a, const std::vector<double>& b) {
  double md = 0, mr = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    md = std::max(md, std::abs(double(a[i]) - b[i]));
    mr = std::max(mr, std::abs(b[i]));
  }
  return md / mr;
}

}  // namespace qw::test

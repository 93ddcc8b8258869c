#include "compiler/gptq/quantizer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/half.h"
#include "core/parallel.h"

namespace qw::gptq {

namespace {

constexpr int kMaxQ = 15;

// Scale (as stored, fp16) and zero of one (group, output) from its weights' range.
struct Params {
  uint16_t scale16;
  float scale;
  int zero;
};

Params find_params(float lo, float hi, bool sym) {
  float xmin = std::min(lo, 0.0f), xmax = std::max(hi, 0.0f);
  if (sym) {
    xmax = std::max(-xmin, xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) xmin = -1, xmax = 1;
  float scale = (xmax - xmin) / float(kMaxQ);
  uint16_t s16 = f32_to_f16(std::min(scale, 65504.0f));
  if ((s16 & 0x7fff) == 0) s16 = 0x0001;  // smallest subnormal: never divide by zero
  const float s = f16_to_f32(s16);
  const int zero =
      sym ? (kMaxQ + 1) / 2 : int(std::clamp(std::nearbyint(-xmin / s), 0.0f, float(kMaxQ)));
  return {s16, s, zero};
}

inline int quantize_one(float x, const Params& p) {
  return int(std::clamp(std::nearbyint(x / p.scale) + float(p.zero), 0.0f, float(kMaxQ)));
}
inline float dequantize_one(int q, const Params& p) {
  return p.scale * float(q - p.zero);
}

QuantizedLinear empty_result(int64_t n, int64_t k, const QuantizeSettings& s) {
  QuantizedLinear q;
  q.out_features = n;
  q.in_features = k;
  q.group_size = s.group_size == -1 ? k : s.group_size;
  q.codes.assign(size_t(n * k), 0);
  q.scales.assign(size_t(q.groups() * n), 0);
  q.zeros.assign(size_t(q.groups() * n), 0);
  q.g_idx.resize(size_t(k));
  return q;
}

// Cholesky factorization in place (lower triangle of a, row-major k x k). False if not PD.
bool cholesky_lower(std::vector<double>& a, int64_t k, unsigned threads) {
  for (int64_t j = 0; j < k; ++j) {
    double* rj = &a[size_t(j * k)];
    double d = rj[j];
    for (int64_t p = 0; p < j; ++p) d -= rj[p] * rj[p];
    if (!(d > 0)) return false;
    const double ljj = std::sqrt(d);
    rj[j] = ljj;
    parallel_for(k - j - 1, (k - j > 256) ? threads : 1, [&](int64_t b, int64_t e) {
      for (int64_t i = j + 1 + b; i < j + 1 + e; ++i) {
        double* ri = &a[size_t(i * k)];
        double s = ri[j];
        for (int64_t p = 0; p < j; ++p) s -= ri[p] * rj[p];
        ri[j] = s / ljj;
      }
    });
  }
  return true;
}

// Upper Cholesky factor U of H^-1 (H^-1 = U^T U), from H's lower factor L: with the
// reversal J, chol(J H^-1 J) ... is avoided by the direct route: H^-1 = L^-T L^-1, then a
// second Cholesky. O(k^3); fine for the CPU path's sizes.
bool inverse_upper_cholesky(std::vector<double> h, int64_t k, unsigned threads,
                            std::vector<double>& u) {
  if (!cholesky_lower(h, k, threads)) return false;
  // Linv = L^-1 (lower), column by column.
  std::vector<double> linv(size_t(k * k), 0.0);
  parallel_for(k, threads, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      for (int64_t i = c; i < k; ++i) {
        double s = i == c ? 1.0 : 0.0;
        for (int64_t p = c; p < i; ++p) s -= h[size_t(i * k + p)] * linv[size_t(p * k + c)];
        linv[size_t(i * k + c)] = s / h[size_t(i * k + i)];
      }
    }
  });
  // Hinv = Linv^T Linv (symmetric; lower triangle filled).
  std::vector<double> hinv(size_t(k * k), 0.0);
  parallel_for(k, threads, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        double s = 0;
        for (int64_t p = i; p < k; ++p) s += linv[size_t(p * k + i)] * linv[size_t(p * k + j)];
        hinv[size_t(i * k + j)] = s;
      }
  });
  if (!cholesky_lower(hinv, k, threads)) return false;
  u.assign(size_t(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j <= i; ++j) u[size_t(j * k + i)] = hinv[size_t(i * k + j)];
  return true;
}

}  // namespace

Status check_quantize_shape(int64_t n, int64_t k, const QuantizeSettings& s) {
  const int64_t gs = s.group_size == -1 ? k : s.group_size;
  if (n <= 0 || k <= 0 || gs <= 0 || k % gs != 0 || k % 8 != 0 || n % 8 != 0)
    return Status::Error("cannot quantize a [" + std::to_string(n) + ", " + std::to_string(k) +
                         "] weight with group_size " + std::to_string(s.group_size) +
                         " (needs multiples of 8 and whole groups)");
  return Status::Ok();
}

void fix_dead_diagonal(std::vector<double>& diag, std::vector<uint8_t>& dead) {
  dead.assign(diag.size(), 0);
  for (size_t c = 0; c < diag.size(); ++c)
    if (diag[c] == 0) {
      diag[c] = 1;
      dead[c] = 1;
    }
}

std::vector<int64_t> gptq_column_order(const std::vector<double>& diag, bool act_order) {
  std::vector<int64_t> perm(diag.size());
  std::iota(perm.begin(), perm.end(), 0);
  if (act_order)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return diag[size_t(a)] > diag[size_t(b)]; });
  return perm;
}

double mean_permuted_diagonal(const std::vector<double>& diag, const std::vector<int64_t>& perm) {
  double mean = 0;
  for (int64_t p : perm) mean += diag[size_t(p)];
  return mean / double(perm.size());
}

std::vector<int32_t> gptq_group_index(const std::vector<int64_t>& perm, int64_t group_size) {
  std::vector<int32_t> g(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) g[size_t(perm[i])] = int32_t(int64_t(i) / group_size);
  return g;
}

Expected<QuantizedLinear> quantize_rtn(const float* w, int64_t n, int64_t k,
                                       const QuantizeSettings& s) {
  QW_RETURN_IF_ERROR(check_quantize_shape(n, k, s));
  QuantizedLinear q = empty_result(n, k, s);
  const int64_t gs = q.group_size;
  for (int64_t c = 0; c < k; ++c) q.g_idx[size_t(c)] = int32_t(c / gs);
  parallel_for(n, s.threads, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* row = w + r * k;
      for (int64_t g = 0; g < q.groups(); ++g) {
        const auto [lo, hi] = std::minmax_element(row + g * gs, row + (g + 1) * gs);
        const Params p = find_params(*lo, *hi, s.sym);
        q.scales[size_t(g * n + r)] = p.scale16;
        q.zeros[size_t(g * n + r)] = uint8_t(p.zero);
        for (int64_t c = g * gs; c < (g + 1) * gs; ++c)
          q.codes[size_t(c * n + r)] = uint8_t(quantize_one(row[c], p));
      }
    }
  });
  return q;
}

void Hessian::add(const float* x, int64_t tokens, unsigned threads) {
  parallel_for(k_, threads, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      double* hi = &h_[size_t(i * k_)];
      for (int64_t t = 0; t < tokens; ++t) {
        const float* xt = x + t * k_;
        const double xi = xt[i];
        if (xi == 0) continue;
        for (int64_t j = 0; j <= i; ++j) hi[j] += xi * double(xt[j]);
      }
    }
  });
  tokens_ += tokens;
}

Status Hessian::add_sum(const Hessian& o) {
  if (o.k_ != k_) return Status::Error("internal: Hessian dimension mismatch");
  for (size_t i = 0; i < h_.size(); ++i) h_[i] += o.h_[i];
  tokens_ += o.tokens_;
  return Status::Ok();
}

Expected<QuantizedLinear> quantize_gptq(const float* w, int64_t n, int64_t k, const Hessian& hs,
                                        const QuantizeSettings& s) {
  QW_RETURN_IF_ERROR(check_quantize_shape(n, k, s));
  if (hs.dim() != k) return Status::Error("internal: Hessian dimension mismatch");
  if (hs.tokens() == 0) return Status::Error("GPTQ needs calibration activations (none collected)");
  QuantizedLinear q = empty_result(n, k, s);
  const int64_t gs = q.group_size;
  // Full symmetric H from the accumulated lower triangle, scaled 2/T.
  std::vector<double> h(size_t(k * k));
  const double scale = 2.0 / double(hs.tokens());
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j <= i; ++j)
      h[size_t(i * k + j)] = h[size_t(j * k + i)] = hs.sum()[size_t(i * k + j)] * scale;
  // Wt[c][r]: columns of W contiguous, the order GPTQ walks them.
  std::vector<float> wt(size_t(k * n));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) wt[size_t(c * n + r)] = w[r * k + c];
  // Inputs never seen active carry no information: fix their weight to 0 (as AutoGPTQ).
  std::vector<double> diag(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) diag[size_t(c)] = h[size_t(c * k + c)];
  std::vector<uint8_t> dead;
  fix_dead_diagonal(diag, dead);
  for (int64_t c = 0; c < k; ++c)
    if (dead[size_t(c)]) {
      h[size_t(c * k + c)] = 1;
      std::fill_n(&wt[size_t(c * n)], n, 0.0f);
    }
  const std::vector<int64_t> perm = gptq_column_order(diag, s.act_order);
  std::vector<double> hp(size_t(k * k));
  std::vector<float> wp(size_t(k * n));
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j)
      hp[size_t(i * k + j)] = h[size_t(perm[size_t(i)] * k + perm[size_t(j)])];
    std::copy_n(&wt[size_t(perm[size_t(i)] * n)], n, &wp[size_t(i * n)]);
  }
  const double mean_diag = mean_permuted_diagonal(diag, perm);
  std::vector<double> u;
  double damp = s.damp_percent;
  for (int attempt = 0;; ++attempt) {
    std::vector<double> hd = hp;
    for (int64_t i = 0; i < k; ++i) hd[size_t(i * k + i)] += damp * mean_diag;
    if (inverse_upper_cholesky(std::move(hd), k, s.threads, u)) break;
    if (attempt + 1 == kGptqDampAttempts)
      return Status::Error("GPTQ: Hessian not positive definite even with damping " +
                           std::to_string(damp));
    damp *= 10;  // deterministic fallback for degenerate calibration data
  }

  std::vector<Params> params(static_cast<size_t>(n));
  auto set_params = [&](int64_t c0, int64_t c1, int64_t g) {
    for (int64_t r = 0; r < n; ++r) {
      float lo = wp[size_t(c0 * n + r)], hi = lo;
      for (int64_t c = c0 + 1; c < c1; ++c) {
        lo = std::min(lo, wp[size_t(c * n + r)]);
        hi = std::max(hi, wp[size_t(c * n + r)]);
      }
      params[size_t(r)] = find_params(lo, hi, s.sym);
      q.scales[size_t(g * n + r)] = params[size_t(r)].scale16;
      q.zeros[size_t(g * n + r)] = uint8_t(params[size_t(r)].zero);
    }
  };
  q.g_idx = gptq_group_index(perm, gs);
  const int64_t B = std::max<int64_t>(1, s.block);
  std::vector<float> err(size_t(B * n));
  for (int64_t i1 = 0; i1 < k; i1 += B) {
    const int64_t i2 = std::min(k, i1 + B);
    for (int64_t i = i1; i < i2; ++i) {
      // Groups follow the (possibly act-order) quantization order; their range is taken from
      // the weights as already updated by earlier errors.
      if (i % gs == 0) set_params(i, i + gs, i / gs);
      const double d = u[size_t(i * k + i)];
      float* col = &wp[size_t(i * n)];
      float* e = &err[size_t((i - i1) * n)];
      const int64_t orig = perm[size_t(i)];
      for (int64_t r = 0; r < n; ++r) {
        const int code = quantize_one(col[r], params[size_t(r)]);
        q.codes[size_t(orig * n + r)] = uint8_t(code);
        e[r] = float((double(col[r]) - dequantize_one(code, params[size_t(r)])) / d);
      }
      for (int64_t j = i + 1; j < i2; ++j) {
        const float f = float(u[size_t(i * k + j)]);
        float* cj = &wp[size_t(j * n)];
        for (int64_t r = 0; r < n; ++r) cj[r] -= e[r] * f;
      }
    }
    // Lazy batch: the block's errors reach the remaining columns in one pass.
    parallel_for(k - i2, s.threads, [&](int64_t b, int64_t e_) {
      for (int64_t j = i2 + b; j < i2 + e_; ++j) {
        float* cj = &wp[size_t(j * n)];
        for (int64_t i = i1; i < i2; ++i) {
          const float f = float(u[size_t(i * k + j)]);
          if (f == 0) continue;
          const float* e = &err[size_t((i - i1) * n)];
          for (int64_t r = 0; r < n; ++r) cj[r] -= e[r] * f;
        }
      }
    });
  }
  return q;
}

}  // namespace qw::gptq

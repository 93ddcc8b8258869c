#include "compiler/gptq/damp_search.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "compiler/gptq/quality_report.h"
#include "core/parallel.h"

namespace qw::gptq {

namespace {

// Rows whose forms are evaluated in one pass over H (its rows are reused from cache).
constexpr int64_t kRowsPerPass = 4;

}  // namespace

DampSearchPlan plan_damp_search(const std::vector<std::vector<int32_t>>& calibration,
                                bool requested) {
  DampSearchPlan p;
  p.requested = requested;
  if (!requested) return p;
  p.by_sequence = int64_t(calibration.size()) >= kDampValSequenceSplitMin;
  for (size_t q = 0; q < calibration.size(); ++q)
    for (size_t i = 0; i < calibration[q].size(); ++i) {
      const bool val =
          p.by_sequence ? is_validation_sequence(int64_t(q)) : is_validation_position(int64_t(i));
      p.val_mask.push_back(uint8_t(val));
      (val ? p.val_tokens : p.fit_tokens) += 1;
    }
  p.enabled = p.val_tokens >= kDampMinValTokens && p.fit_tokens > 0;
  if (!p.enabled) {
    p.val_mask.clear();
    p.note = "damping search off: " + std::to_string(p.val_tokens) +
             " validation tokens, it needs " + std::to_string(kDampMinValTokens) +
             " (positions 256-319 of every 320 in each calibration sequence); GPTQ uses --damp";
  }
  return p;
}

std::vector<TokenRun> mask_runs(const std::vector<uint8_t>& m) {
  std::vector<TokenRun> runs;
  for (size_t t = 0; t < m.size(); ++t) {
    if (runs.empty() || runs.back().val != bool(m[t])) runs.push_back({int64_t(t), 0, bool(m[t])});
    ++runs.back().count;
  }
  return runs;
}

int choose_damp_candidate(const std::array<double, kDampCandidates>& e) {
  // RTN first, then the dampenings from the largest down: a later candidate must be strictly
  // better to win, which is the tie order.
  int best = 0;
  for (int c : {3, 2, 1}) {
    const double x = e[size_t(c)], b = e[size_t(best)];
    if (!std::isnan(x) && (std::isnan(b) || x < b)) best = c;
  }
  return best;
}

std::string damp_search_summary(const std::vector<DampChoice>& choices) {
  std::array<int64_t, kDampCandidates> count{};
  for (const DampChoice& c : choices) ++count[size_t(c.candidate)];
  const int64_t gptq = count[1] + count[2] + count[3];
  char line[200];
  std::snprintf(line, sizeof line,
                "damping search: %lld linears: %lld GPTQ (d %lld, 10d %lld, 100d %lld), %lld RTN",
                (long long)choices.size(), (long long)gptq, (long long)count[1],
                (long long)count[2], (long long)count[3], (long long)count[0]);
  return line;
}

Expected<QuantizedLinear> quantize_rtn_ordered(const float* w, int64_t n, int64_t k,
                                               const std::vector<int64_t>& perm,
                                               const QuantizeSettings& s) {
  QW_RETURN_IF_ERROR(check_quantize_shape(n, k, s));
  if (int64_t(perm.size()) != k) return Status::Error("internal: RTN column order of wrong size");
  bool identity = true;
  for (int64_t c = 0; c < k && identity; ++c) identity = perm[size_t(c)] == c;
  if (identity) return quantize_rtn(w, n, k, s);
  // Gather the columns into the order, round contiguous groups there, and scatter the codes
  // back: group g of the result is inputs perm[g * gs .. (g + 1) * gs).
  std::vector<float> wp(size_t(n * k));
  parallel_for(n, std::max(1u, s.threads), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      for (int64_t i = 0; i < k; ++i) wp[size_t(r * k + i)] = w[r * k + perm[size_t(i)]];
  });
  QW_ASSIGN_OR_RETURN(QuantizedLinear q, quantize_rtn(wp.data(), n, k, s));
  std::vector<uint8_t> codes(q.codes.size());
  for (int64_t i = 0; i < k; ++i)
    std::copy_n(&q.codes[size_t(i * n)], n, &codes[size_t(perm[size_t(i)] * n)]);
  q.codes = std::move(codes);
  q.g_idx = gptq_group_index(perm, q.group_size);
  return q;
}

std::vector<int64_t> hessian_column_order(const Hessian& h, bool act_order) {
  const int64_t k = h.dim();
  const double scale = 2.0 / double(h.tokens());
  std::vector<double> diag(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) diag[size_t(c)] = h.sum()[size_t(c * k + c)] * scale;
  std::vector<uint8_t> dead;
  fix_dead_diagonal(diag, dead);
  return gptq_column_order(diag, act_order);
}

std::vector<double> weight_error_forms(const Hessian& h, const float* w,
                                       const std::vector<const float*>& q, int64_t n, int64_t k,
                                       unsigned threads) {
  const std::vector<double>& H = h.sum();  // lower triangle, row-major: (a, c <= a) at a * k + c
  const int64_t nf = int64_t(q.size());
  std::vector<double> rows(size_t(n * nf), 0.0);
  if (nf == 0) return {};
  parallel_for(n, std::max(1u, threads), [&](int64_t b, int64_t e) {
    // The vectors of one pass, interleaved v[c * nv + f]: nf per row, in double, where the
    // differences are exact; a short last pass is padded with zeros. Each vector's sums run over
    // c in order whatever else shares the pass, so a row's forms do not depend on how the rows
    // were split.
    const int64_t nv = nf * kRowsPerPass;
    std::vector<double> v(static_cast<size_t>(nv * k)), acc(static_cast<size_t>(nv)),
        s(static_cast<size_t>(nv));
    for (int64_t r0 = b; r0 < e; r0 += kRowsPerPass) {
      const int64_t m = std::min(kRowsPerPass, e - r0);
      std::fill(v.begin(), v.end(), 0.0);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t f = 0; f < nf; ++f) {
          const float* qf = q[size_t(f)];
          for (int64_t c = 0; c < k; ++c) {
            const size_t src = size_t((r0 + i) * k + c);
            const double wv = double(w[src]);
            v[size_t(c * nv + nf * i + f)] = qf ? wv - double(qf[src]) : wv;
          }
        }
      // x^T H x = sum_a x_a (H_aa x_a + 2 sum_{c < a} H_ac x_c): the lower triangle only, one
      // pass over it for all the vectors.
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t a = 0; a < k; ++a) {
        const double* ha = &H[size_t(a * k)];
        std::fill(s.begin(), s.end(), 0.0);
        for (int64_t c = 0; c < a; ++c) {
          const double hc = ha[c];
          const double* vc = &v[size_t(c * nv)];
          for (int64_t f = 0; f < nv; ++f) s[size_t(f)] += hc * vc[f];
        }
        const double* va = &v[size_t(a * nv)];
        for (int64_t f = 0; f < nv; ++f)
          acc[size_t(f)] += va[f] * (ha[a] * va[f] + 2 * s[size_t(f)]);
      }
      for (int64_t i = 0; i < m; ++i)
        for (int64_t f = 0; f < nf; ++f) rows[size_t((r0 + i) * nf + f)] = acc[size_t(nf * i + f)];
    }
  });
  std::vector<double> total(size_t(nf), 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t f = 0; f < nf; ++f) total[size_t(f)] += rows[size_t(r * nf + f)];
  return total;
}

Expected<SearchedLinear> quantize_damp_searched(const float* w, int64_t n, int64_t k,
                                                const Hessian& fit, const Hessian& val,
                                                const Hessian& full, const QuantizeSettings& s) {
  QW_RETURN_IF_ERROR(check_quantize_shape(n, k, s));
  if (fit.dim() != k || val.dim() != k || full.dim() != k)
    return Status::Error("internal: Hessian dimension mismatch");
  if (fit.tokens() == 0 || val.tokens() == 0)
    return Status::Error("damping search needs fit and validation activations (none collected)");
  const unsigned th = std::max(1u, s.threads);
  // Candidates' dequantized weights: RTN (in H_fit's column order with act-order), then GPTQ
  // on H_fit with d, 10d, 100d.
  std::vector<std::vector<float>> deq(static_cast<size_t>(kDampCandidates));
  {
    QW_ASSIGN_OR_RETURN(QuantizedLinear r,
                        quantize_rtn_ordered(w, n, k, hessian_column_order(fit, s.act_order), s));
    deq[0] = dequantize_linear(r, th);
  }
  for (int c = 1; c < kDampCandidates; ++c) {
    QuantizeSettings sc = s;
    sc.damp_percent = s.damp_percent * kDampCandidateList[size_t(c)].factor;
    Expected<QuantizedLinear> q = quantize_gptq(w, n, k, fit, sc);
    if (!q.ok())
      return q.status().context(std::string("damping candidate ") +
                                kDampCandidateList[size_t(c)].name);
    deq[size_t(c)] = dequantize_linear(*q, th);
  }
  std::vector<const float*> qs;
  for (const auto& d : deq) qs.push_back(d.data());
  const std::vector<double> err = weight_error_forms(val, w, qs, n, k, th);
  SearchedLinear out;
  std::copy(err.begin(), err.end(), out.choice.val_err.begin());
  out.choice.candidate = choose_damp_candidate(out.choice.val_err);
  if (out.choice.rtn()) {
    QW_ASSIGN_OR_RETURN(out.q,
                        quantize_rtn_ordered(w, n, k, hessian_column_order(full, s.act_order), s));
    out.choice.damp = 0;
  } else {
    QuantizeSettings sc = s;
    sc.damp_percent = s.damp_percent * kDampCandidateList[size_t(out.choice.candidate)].factor;
    out.choice.damp = sc.damp_percent;
    QW_ASSIGN_OR_RETURN(out.q, quantize_gptq(w, n, k, full, sc));
  }
  return out;
}

}  // namespace qw::gptq

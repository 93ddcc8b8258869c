#include "compiler/gptq/quality_report.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/parallel.h"

namespace qw::gptq {

namespace {

// Held out: every kHeldoutStride-th sequence counting back from the last (about 20%).
constexpr size_t kHeldoutStride = 5;
// Rows whose forms are evaluated in one pass over H_h (its rows are reused from cache).
constexpr int64_t kRowsPerPass = 4;

double ratio(const HeldoutErrors& e) {
  if (e.rtn > 0) return e.gptq / e.rtn;
  return e.gptq == 0 ? 1.0 : std::numeric_limits<double>::infinity();
}
double relative(double err, double reference) {
  return reference > 0 ? err / reference : 0.0;
}

std::string temp_path(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}

Status write_all(int fd, const std::string& text, const std::string& where) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t w = ::write(fd, text.data() + done, text.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::Error(where + ": write failed: " + std::strerror(errno));
    }
    done += size_t(w);
  }
  return Status::Ok();
}

}  // namespace

Expected<CalibrationSplit> split_heldout(const std::vector<std::vector<int32_t>>& seqs) {
  if (seqs.size() < 2)
    return Status::Error(
        "--quality-report needs at least 2 calibration sequences (one is held out), the "
        "calibration text gives " +
        std::to_string(seqs.size()) + "; use a longer --calib text");
  CalibrationSplit s;
  for (size_t i = 0; i < seqs.size(); ++i)
    ((seqs.size() - 1 - i) % kHeldoutStride == 0 ? s.heldout : s.calibration).push_back(seqs[i]);
  return s;
}

HeldoutErrors heldout_errors(const Hessian& h, const float* w, const float* q_gptq,
                             const float* q_rtn, int64_t n, int64_t k, unsigned threads) {
  const std::vector<double>& H = h.sum();  // lower triangle, row-major: (a, c <= a) at a * k + c
  std::vector<HeldoutErrors> rows(static_cast<size_t>(n));
  parallel_for(n, std::max(1u, threads), [&](int64_t b, int64_t e) {
    // The vectors of one pass, interleaved v[c * kVectors + f]: 3 per row (W - Q_gptq,
    // W - Q_rtn, W) in double, where the differences are exact; a short last pass is padded
    // with zeros. Each vector's sums run over c in order whatever else shares the pass, so a
    // row's forms do not depend on how the rows were split.
    constexpr int64_t kVectors = 3 * kRowsPerPass;
    std::vector<double> v(size_t(kVectors * k));
    for (int64_t r0 = b; r0 < e; r0 += kRowsPerPass) {
      const int64_t m = std::min(kRowsPerPass, e - r0);
      std::fill(v.begin(), v.end(), 0.0);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t c = 0; c < k; ++c) {
          const size_t src = size_t((r0 + i) * k + c);
          const double wv = double(w[src]);
          double* vc = &v[size_t(c * kVectors + 3 * i)];
          vc[0] = wv - double(q_gptq[src]);
          vc[1] = wv - double(q_rtn[src]);
          vc[2] = wv;
        }
      // x^T H x = sum_a x_a (H_aa x_a + 2 sum_{c < a} H_ac x_c): the lower triangle only, one
      // pass over it for all the vectors.
      double acc[kVectors] = {};
      for (int64_t a = 0; a < k; ++a) {
        const double* ha = &H[size_t(a * k)];
        double s[kVectors] = {};
        for (int64_t c = 0; c < a; ++c) {
          const double hc = ha[c];
          const double* vc = &v[size_t(c * kVectors)];
          for (int64_t f = 0; f < kVectors; ++f) s[f] += hc * vc[f];
        }
        const double* va = &v[size_t(a * kVectors)];
        for (int64_t f = 0; f < kVectors; ++f) acc[f] += va[f] * (ha[a] * va[f] + 2 * s[f]);
      }
      for (int64_t i = 0; i < m; ++i)
        rows[size_t(r0 + i)] = {acc[3 * i], acc[3 * i + 1], acc[3 * i + 2]};
    }
  });
  HeldoutErrors total;
  for (const HeldoutErrors& r : rows) {
    total.gptq += r.gptq;
    total.rtn += r.rtn;
    total.reference += r.reference;
  }
  return total;
}

std::vector<float> dequantize_linear(const QuantizedLinear& q, unsigned threads) {
  const int64_t n = q.out_features, k = q.in_features;
  std::vector<float> w(size_t(n * k));
  parallel_for(n, std::max(1u, threads), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      for (int64_t c = 0; c < k; ++c) w[size_t(r * k + c)] = q.value(r, c);
  });
  return w;
}

Expected<std::vector<float>> rtn_dequantized(const float* w, int64_t n, int64_t k,
                                             const QuantizeSettings& s) {
  QW_ASSIGN_OR_RETURN(QuantizedLinear q, quantize_rtn(w, n, k, s));
  return dequantize_linear(q, s.threads);
}

QualitySummary summarize(const QualityReport& r) {
  QualitySummary s;
  double sum = 0;
  for (const LinearQuality& l : r.linears) {
    const double x = ratio(l.err);
    s.gptq_le_rtn += l.err.gptq <= l.err.rtn;
    s.worst_ratio = s.linears == 0 ? x : std::max(s.worst_ratio, x);
    sum += x;
    ++s.linears;
  }
  s.mean_ratio = s.linears ? sum / double(s.linears) : 0.0;
  return s;
}

std::string quality_report_json(const QualityReport& r) {
  using oj = nlohmann::ordered_json;
  oj j;
  j["device"] = r.device;
  j["group_size"] = r.group_size;
  j["act_order"] = r.act_order;
  j["damp_percent"] = r.damp_percent;
  j["calib_sequences"] = r.calib_sequences;
  j["calib_tokens"] = r.calib_tokens;
  j["heldout_sequences"] = r.heldout_sequences;
  j["heldout_tokens"] = r.heldout_tokens;
  j["propagation"] = kQualityPropagation;
  j["error"] =
      "err = sum over held-out tokens and output rows of (x (W - dequant(Q))^T)^2, computed as "
      "trace(D H_h D^T) with H_h = X_h^T X_h; *_rel = err / ||X_h W^T||^2; RTN: round to "
      "nearest with the same group size and zero points";
  oj layers = oj::array();
  for (const LinearQuality& l : r.linears) {
    oj e;
    e["layer"] = l.layer;
    e["linear"] = l.linear;
    e["gptq_err"] = l.err.gptq;
    e["rtn_err"] = l.err.rtn;
    e["gptq_rel"] = relative(l.err.gptq, l.err.reference);
    e["rtn_rel"] = relative(l.err.rtn, l.err.reference);
    e["ratio"] = ratio(l.err);
    e["reference"] = l.err.reference;
    e["gptq_le_rtn"] = l.err.gptq <= l.err.rtn;
    layers.push_back(std::move(e));
  }
  j["layers"] = std::move(layers);
  const QualitySummary s = summarize(r);
  j["summary"] = {{"linears", s.linears},
                  {"gptq_le_rtn", s.gptq_le_rtn},
                  {"worst_ratio", s.worst_ratio},
                  {"mean_ratio", s.mean_ratio}};
  return j.dump(2) + "\n";
}

std::string quality_summary_line(const QualityReport& r) {
  const QualitySummary s = summarize(r);
  char line[160];
  std::snprintf(line, sizeof line,
                "quality: GPTQ <= RTN on %lld/%lld linears, worst ratio %.3f, mean %.3f",
                (long long)s.gptq_le_rtn, (long long)s.linears, s.worst_ratio, s.mean_ratio);
  return line;
}

Status check_quality_report_path(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return Status::Error(path + ": cannot write the quality report: is a directory");
  const std::string tmp = temp_path(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return Status::Error(path + ": cannot write the quality report: " + std::strerror(errno));
  ::close(fd);
  ::unlink(tmp.c_str());
  return Status::Ok();
}

Status write_quality_report(const std::string& path, const QualityReport& r) {
  const std::string tmp = temp_path(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return Status::Error(path + ": cannot write the quality report: " + std::strerror(errno));
  Status st = write_all(fd, quality_report_json(r), tmp);
  if (st.ok() && ::fsync(fd) != 0)
    st = Status::Error(tmp + ": fsync failed: " + std::strerror(errno));
  if (::close(fd) != 0 && st.ok())
    st = Status::Error(tmp + ": close failed: " + std::strerror(errno));
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0)
    st = Status::Error(path + ": cannot rename from " + tmp + ": " + std::strerror(errno));
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

}  // namespace qw::gptq

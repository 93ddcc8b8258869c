#include "compiler/gptq/quality_report.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "compiler/gptq/damp_search.h"
#include "core/parallel.h"

namespace qw::gptq {

namespace {

// Held out: every kHeldoutStride-th sequence counting back from the last (about 20%).
constexpr size_t kHeldoutStride = 5;

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
  // Three forms per row: W - Q_gptq, W - Q_rtn and W itself (damp_search.h).
  const std::vector<double> f = weight_error_forms(h, w, {q_gptq, q_rtn, nullptr}, n, k, threads);
  return {f[0], f[1], f[2]};
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

Expected<std::string> quality_report_json(const QualityReport& r) {
  using oj = nlohmann::ordered_json;
  const bool searched = !r.damp_choices.empty();
  if (searched && r.damp_choices.size() != r.linears.size())
    return Status::Error("internal: the quality report has " + std::to_string(r.linears.size()) +
                         " linears and " + std::to_string(r.damp_choices.size()) +
                         " damping choices");
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
  {
    oj d;
    d["enabled"] = r.damp_search.enabled;
    if (!r.damp_search.note.empty()) d["note"] = r.damp_search.note;
    d["fit_tokens"] = r.damp_search.fit_tokens;
    d["validation_tokens"] = r.damp_search.val_tokens;
    d["validation"] =
        r.damp_search.by_sequence
            ? "calibration sequences i with i % 5 == 2, whole"
            : "positions [64j, 64j + 64) with j % 5 == 4 of every calibration sequence";
    oj cands = oj::array();
    for (const DampCandidate& c : kDampCandidateList)
      cands.push_back({{"name", c.name},
                       {"damp", c.factor == 0 ? oj(nullptr) : oj(c.factor * r.damp_percent)}});
    d["candidates"] = std::move(cands);
    d["choice"] =
        "smallest validation error trace(D H_val D^T), D = W - dequant(Q), GPTQ candidates "
        "fitted on H_fit; ties: RTN, then the larger dampening; a GPTQ winner is quantized again "
        "with its dampening on H_fit + H_val";
    j["damp_search"] = std::move(d);
  }
  oj layers = oj::array();
  for (size_t i = 0; i < r.linears.size(); ++i) {
    const LinearQuality& l = r.linears[i];
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
    if (searched) {
      const DampChoice& c = r.damp_choices[i];
      if (c.layer != l.layer || c.linear != l.linear)
        return Status::Error("internal: damping choice " + std::to_string(i) + " is layer " +
                             std::to_string(c.layer) + " " + c.linear + ", the report's " +
                             std::to_string(l.layer) + " " + l.linear);
      e["method"] = c.rtn() ? "rtn" : "gptq";
      e["damp"] = c.rtn() ? oj(nullptr) : oj(c.damp);
      e["damp_candidate"] = kDampCandidateList[size_t(c.candidate)].name;
      oj v;
      for (int k = 0; k < kDampCandidates; ++k)
        v[kDampCandidateList[size_t(k)].name] = c.val_err[size_t(k)];
      e["val_err"] = std::move(v);
    } else {
      e["method"] = "gptq";
      e["damp"] = r.damp_percent;
    }
    layers.push_back(std::move(e));
  }
  j["layers"] = std::move(layers);
  const QualitySummary s = summarize(r);
  j["summary"] = {{"linears", s.linears},
                  {"gptq_le_rtn", s.gptq_le_rtn},
                  {"worst_ratio", s.worst_ratio},
                  {"mean_ratio", s.mean_ratio}};
  if (searched) {
    std::array<int64_t, kDampCandidates> count{};
    for (const DampChoice& c : r.damp_choices) ++count[size_t(c.candidate)];
    oj d;
    d["gptq"] = count[1] + count[2] + count[3];
    d["rtn"] = count[0];
    for (int k = 1; k < kDampCandidates; ++k)
      d[kDampCandidateList[size_t(k)].name] = count[size_t(k)];
    j["summary"]["damp_search"] = std::move(d);
  }
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
  QW_ASSIGN_OR_RETURN(const std::string text, quality_report_json(r));
  const std::string tmp = temp_path(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return Status::Error(path + ": cannot write the quality report: " + std::strerror(errno));
  Status st = write_all(fd, text, tmp);
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

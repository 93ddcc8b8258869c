// GPTQ's quality against round-to-nearest on held-out text (qwc compile --quality-report).
//
// The calibration sequences are split: every 5th one, counting back from the last, is held
// out; GPTQ's Hessians use the rest. The held-out sequences run through the same forward as
// the calibration ones, so each linear sees them as GPTQ saw its calibration inputs. For a
// linear with weight W [n][k], quantized weight Q and held-out inputs X_h [tokens][k], the
// output error is
//     err(Q) = sum over tokens and output rows of (x (W - Q)^T)^2 = sum_r d_r H_h d_r^T,
// d_r = row r of D = W - Q, H_h = X_h^T X_h (unscaled) -- one more Hessian per input and a
// quadratic form per row instead of a pass over the tokens. The reference ||X_h W^T||^2 is
// the same form of W, so err / reference compares layers of any size.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/gptq/damp_search.h"
#include "compiler/gptq/gptq_tensors.h"
#include "compiler/gptq/quantizer.h"
#include "core/status.h"

namespace qw::gptq {

// How the held-out activations reach each linear, recorded in the report.
inline constexpr const char* kQualityPropagation =
    "quantized: held-out sequences run through the same fp32 forward as the calibration ones, "
    "layer by layer in true-sequential order (q/k/v, o, gate/up, down), so each linear's "
    "held-out inputs come from the model with every earlier linear already replaced by its "
    "dequantized GPTQ weight, exactly as GPTQ's calibration inputs do; RTN is measured on the "
    "same inputs";

struct CalibrationSplit {
  std::vector<std::vector<int32_t>> calibration, heldout;  // each in the original order
};

// Every 5th sequence counting back from the last is held out (the last always is, so the
// calibration keeps the first sequences when there are few). Needs 2 sequences or more.
Expected<CalibrationSplit> split_heldout(const std::vector<std::vector<int32_t>>& sequences);

// The three quadratic forms of one linear on H_h.
struct HeldoutErrors {
  double gptq = 0, rtn = 0, reference = 0;
};

// w, q_gptq, q_rtn: row-major [n][k] fp32; h: the held-out Hessian sum (Hessian keeps the
// lower triangle). Rows run in parallel on `threads`; each row's forms are summed alone and
// the rows added in order, so the result does not depend on the thread count.
HeldoutErrors heldout_errors(const Hessian& h, const float* w, const float* q_gptq,
                             const float* q_rtn, int64_t n, int64_t k, unsigned threads);

// QuantizedLinear::value of every weight, row-major [n][k].
std::vector<float> dequantize_linear(const QuantizedLinear& q, unsigned threads);

// The RTN counterpart of a GPTQ result: W rounded with the same settings (group size, zero
// point convention), dequantized.
Expected<std::vector<float>> rtn_dequantized(const float* w, int64_t n, int64_t k,
                                             const QuantizeSettings& s);

struct LinearQuality {
  int64_t layer = 0;
  std::string linear;  // q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj
  HeldoutErrors err;
};

// The damping search as it ran (damp_search.h).
struct DampSearchInfo {
  bool requested = false, enabled = false;
  int64_t fit_tokens = 0, val_tokens = 0;
  bool by_sequence = false;  // validation: whole sequences (else blocks of positions)
  std::string note;          // requested but off: why
};

struct QualityReport {
  std::string device;  // "cpu" | "gpu"
  int64_t group_size = 0;
  bool act_order = false;
  double damp_percent = 0;
  int64_t calib_sequences = 0, calib_tokens = 0, heldout_sequences = 0, heldout_tokens = 0;
  std::vector<LinearQuality> linears;  // in quantization order
  DampSearchInfo damp_search;
  std::vector<DampChoice> damp_choices;  // with the search: one per linear, as `linears`
};

struct QualitySummary {
  int64_t linears = 0, gptq_le_rtn = 0;
  double worst_ratio = 0, mean_ratio = 0;  // of gptq / rtn
};
QualitySummary summarize(const QualityReport& r);

// The report as JSON text (format in docs/int4_layout.md). Fails (naming the linear) when
// damp_choices is neither empty nor aligned with linears.
Expected<std::string> quality_report_json(const QualityReport& r);
// "quality: GPTQ <= RTN on 14/14 linears, worst ratio 0.83, mean 0.61".
std::string quality_summary_line(const QualityReport& r);

// Fails, naming `path`, when the report could not be written there (checked before hours of
// quantization, by creating and removing the temporary file).
Status check_quality_report_path(const std::string& path);
// Writes the JSON to a temporary file next to `path`, then renames it over `path`.
Status write_quality_report(const std::string& path, const QualityReport& r);

}  // namespace qw::gptq

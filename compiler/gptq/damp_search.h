// GPTQ's dampening chosen per linear on a validation split of the calibration text ("damping
// search", qwc compile's default for GPTQ; --no-damp-search turns it off).
//
// GPTQ minimizes a linear's output error on its calibration Hessian; with few tokens for the
// input width (7B's down_proj: 18,944 inputs) or unstructured activations it overfits that
// Hessian and can lose to round-to-nearest on unseen text. The search measures that instead of
// assuming it:
//   * validation tokens: with 3 or more calibration sequences, every 5th sequence (index
//     i % 5 == 2) whole: unseen text, as GPTQ will meet it (blocks of the same sequences share
//     their context and vocabulary with the fit tokens and judged overfitting too mildly: on
//     the 7b shape, down_proj looked 0.90-0.999x RTN on them and was 1.007-1.032x on held-out
//     sequences). With fewer sequences, within each sequence the positions of every 5th block
//     of 64 ([64j, 64j + 64) with j % 5 == 4). The others are the fit tokens. The forward still
//     runs every sequence whole; only the Hessians are split: H_fit from the fit tokens, H_val
//     from the validation ones (the quality report's held-out sequences stay out of both);
//   * candidates per linear: RTN, and GPTQ on H_fit with dampening d, 10d and 100d (d =
//     --damp, a fraction of the mean Hessian diagonal); each one's validation error is
//     trace(D H_val D^T), D = W - dequant(Q) (quality_report.h's form);
//   * the smallest validation error wins; ties go to RTN, then to the larger dampening;
//   * the result: a GPTQ winner is quantized once more with its dampening on H_fit + H_val
//     (every calibration token); an RTN winner is RTN-quantized (same group size and zero
//     points; with act-order its groups follow GPTQ's column order on H_fit + H_val, so the
//     linears fused with it keep one g_idx).
// Linears that read the same input (q/k/v, gate/up) share H_fit and H_val, each choosing for
// itself. Both backends (model_quantizer.cpp, gpu/calib_forward.cpp) take the same decisions
// with the functions below.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/gptq/gptq_tensors.h"
#include "compiler/gptq/quantizer.h"
#include "core/status.h"

namespace qw::gptq {

// ---- the validation split --------------------------------------------------------------
inline constexpr int64_t kDampValBlock = 64;      // positions per block
inline constexpr int64_t kDampValStride = 5;      // every 5th block is validation
inline constexpr int64_t kDampMinValTokens = 64;  // fewer: no search (said once on stderr)

inline constexpr int64_t kDampValSequenceSplitMin = 3;  // sequences for the sequence split

// Whether position `pos` of a calibration sequence is a validation token (the block split).
inline bool is_validation_position(int64_t pos) {
  return (pos / kDampValBlock) % kDampValStride == kDampValStride - 1;
}
// Whether calibration sequence i is a validation sequence (the sequence split).
inline bool is_validation_sequence(int64_t i) {
  return i % kDampValStride == 2;
}

// What the search will do with these calibration sequences (held-out ones already removed).
struct DampSearchPlan {
  bool requested = false;  // asked for (qwc's default for GPTQ)
  bool enabled = false;    // requested and enough validation tokens
  int64_t fit_tokens = 0, val_tokens = 0;
  bool by_sequence = false;       // whole sequences (else blocks of positions)
  std::vector<uint8_t> val_mask;  // per token of the concatenated sequences: 1 = validation
  std::string note;               // when requested but not enabled: why (one line, for stderr)
};
DampSearchPlan plan_damp_search(const std::vector<std::vector<int32_t>>& calibration,
                                bool requested);

// Maximal runs of consecutive tokens with the same mask value: (first token, count, is_val).
struct TokenRun {
  int64_t begin = 0, count = 0;
  bool val = false;
};
std::vector<TokenRun> mask_runs(const std::vector<uint8_t>& val_mask);

// ---- candidates and the choice ---------------------------------------------------------
inline constexpr int kDampCandidates = 4;
struct DampCandidate {
  const char* name;  // "rtn", "d", "10d", "100d"
  double factor;     // times d; 0 for RTN
};
inline constexpr std::array<DampCandidate, kDampCandidates> kDampCandidateList = {
    {{"rtn", 0.0}, {"d", 1.0}, {"10d", 10.0}, {"100d", 100.0}}};

// The index (into kDampCandidateList) of the smallest validation error; ties prefer RTN, then
// the larger dampening. NaN errors never win.
int choose_damp_candidate(const std::array<double, kDampCandidates>& val_err);

// One linear's decision, in quantization order.
struct DampChoice {
  int64_t layer = 0;
  std::string linear;  // q_proj, ..., down_proj
  int candidate = 1;   // index into kDampCandidateList
  double damp = 0;     // the dampening fraction of the GPTQ winner (0 for RTN)
  std::array<double, kDampCandidates> val_err{};
  bool rtn() const { return candidate == 0; }
};

// "damping search: 14 linears: 9 GPTQ (d 5, 10d 3, 100d 1), 5 RTN".
std::string damp_search_summary(const std::vector<DampChoice>& choices);

// ---- the pieces both backends use ------------------------------------------------------
// RTN as the search ships it: quantize_rtn, except that with act-order the groups are runs of
// group_size inputs in the order `perm` (g_idx = gptq_group_index(perm)); with the identity
// order this is quantize_rtn exactly.
Expected<QuantizedLinear> quantize_rtn_ordered(const float* w, int64_t n, int64_t k,
                                               const std::vector<int64_t>& perm,
                                               const QuantizeSettings& s);

// The column order quantize_gptq would use for this Hessian sum (dead inputs and act-order
// decided from the 2/T-scaled diagonal, as there).
std::vector<int64_t> hessian_column_order(const Hessian& h, bool act_order);

// sum over rows r of d_r H d_r^T with d = W - Q, for each Q in `q` (row-major [n][k] fp32; a
// null entry stands for Q = 0, the form of W itself). H: a Hessian sum (lower triangle).
// Rows run in parallel; each row's forms are summed alone and rows added in order, so the
// result does not depend on the thread count.
std::vector<double> weight_error_forms(const Hessian& h, const float* w,
                                       const std::vector<const float*>& q, int64_t n, int64_t k,
                                       unsigned threads);

// The search for one linear on the CPU. `full` is fit + val (Hessian::add_sum).
struct SearchedLinear {
  QuantizedLinear q;
  DampChoice choice;  // layer / linear left for the caller
};
Expected<SearchedLinear> quantize_damp_searched(const float* w, int64_t n, int64_t k,
                                                const Hessian& fit, const Hessian& val,
                                                const Hessian& full, const QuantizeSettings& s);

}  // namespace qw::gptq

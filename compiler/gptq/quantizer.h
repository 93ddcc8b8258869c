// Quantizes one fp32 weight W [N out, K in] to 4-bit codes with per-(group, output) fp16
// scales and integer zero points, as AutoGPTQ defines them (min/max range including 0,
// symmetric: zero 8 and range +-max|w|). Scales are rounded to fp16 before the codes are
// chosen, so the stored scale is the one the rounding (and GPTQ's error feedback) used.
//   RTN:  every weight rounded to the nearest level of its group.
//   GPTQ: columns quantized in order (act-order: by decreasing Hessian diagonal), each
//         column's rounding error spread over the not-yet-quantized columns through the
//         upper Cholesky factor of the damped inverse Hessian, with lazy block updates
//         (Frantar et al. 2022). The Hessian is 2/T * sum over calibration tokens of x x^T.
#pragma once
#include <cstdint>
#include <vector>

#include "compiler/gptq/gptq_tensors.h"
#include "core/status.h"

namespace qw::gptq {

struct QuantizeSettings {
  int64_t group_size = 128;  // -1: one group over all K
  bool sym = true;
  bool act_order = false;
  double damp_percent = 0.01;  // of the mean Hessian diagonal
  int64_t block = 128;         // lazy-batch width
  unsigned threads = 1;
};

// w is row-major [n][k] (HF layout).
Expected<QuantizedLinear> quantize_rtn(const float* w, int64_t n, int64_t k,
                                       const QuantizeSettings& s);

// Running Hessian of one layer input: h += x^T x over the rows of x [tokens][k] (summed in a
// fixed order whatever the thread count, so compiles are reproducible).
class Hessian {
 public:
  explicit Hessian(int64_t k) : k_(k), h_(size_t(k * k), 0.0) {}
  void add(const float* x, int64_t tokens, unsigned threads);
  // h += o's sum (element by element), tokens += o's: the Hessian of both token sets.
  Status add_sum(const Hessian& o);
  int64_t dim() const { return k_; }
  int64_t tokens() const { return tokens_; }
  const std::vector<double>& sum() const { return h_; }

 private:
  int64_t k_;
  int64_t tokens_ = 0;
  std::vector<double> h_;
};

Expected<QuantizedLinear> quantize_gptq(const float* w, int64_t n, int64_t k, const Hessian& h,
                                        const QuantizeSettings& s);

// Pieces of quantize_gptq shared with the GPU path (compiler/gptq/gpu), so both take the same
// decisions from the same numbers.
// Dampening that fails to make H positive definite is retried x10, this many times in all.
inline constexpr int kGptqDampAttempts = 5;
// Refuses shapes the 4-bit packing cannot hold (multiples of 8, whole groups).
Status check_quantize_shape(int64_t n, int64_t k, const QuantizeSettings& s);
// The scaled Hessian's diagonal with dead inputs (never active: 0) set to 1, as quantize_gptq
// does before anything else; `dead` receives which inputs those were.
void fix_dead_diagonal(std::vector<double>& diag, std::vector<uint8_t>& dead);
// The order GPTQ quantizes the columns in: 0..k-1, or with act-order by decreasing diagonal
// (stable: equal values keep index order).
std::vector<int64_t> gptq_column_order(const std::vector<double>& diag, bool act_order);
// The dampening reference: the mean diagonal, summed in quantization order.
double mean_permuted_diagonal(const std::vector<double>& diag, const std::vector<int64_t>& perm);
// g_idx of a GPTQ result: column perm[i] belongs to group i / group_size.
std::vector<int32_t> gptq_group_index(const std::vector<int64_t>& perm, int64_t group_size);

}  // namespace qw::gptq

// GPTQ of one linear layer on the GPU, in three steps that mirror quantize_gptq:
//   hessian_sum    sum over tokens of x x^T in double (cuBLAS DSYRK), lower triangle;
//   factor_hessian scaled 2/T, dead inputs fixed, act-order permutation, dampening (with the
//                  CPU's x10 retries), then U = upper Cholesky factor of the damped inverse
//                  via cuSOLVER (potrf, potri, potrf); computed once per Hessian and shared
//                  by the linears that read the same input (q/k/v, gate/up);
//   solve_gptq     the column loop: a kernel per 128-column block (one thread per output
//                  row) and the lazy update of the remaining columns.
// The host decides what quantize_gptq decides (dead inputs, order, mean diagonal, g_idx)
// with the same functions (quantizer.h); the kernels round as the CPU does. The results
// differ from the CPU's only through U's and the Hessian's last bits (another summation
// order and another Cholesky), which move a code only at a rounding tie.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/gptq/gptq_tensors.h"
#include "compiler/gptq/gpu/cuda_libs.h"
#include "compiler/gptq/quantizer.h"

namespace qw::gptq::gpu {

// What GPTQ needs from one Hessian. `uf` is float(U) (upper, row-major), `ud` U's diagonal.
struct GptqFactor {
  int64_t k = 0;
  std::vector<int64_t> perm;   // quantization order
  std::vector<int32_t> g_idx;  // the resulting group of each input
  DeviceBuffer perm_dev, dead_dev, g_idx_dev, uf, ud;
};

// S (k * k doubles, allocated here when empty) = sum over the rows of x [tokens][k] (device)
// of x x^T; only the lower triangle (column-major: entry (a, b), a >= b, at a + b * k) is set.
Status hessian_sum(const GpuContext& ctx, const float* x, int64_t tokens, int64_t k,
                   DeviceBuffer& S, const std::string& what);

// hessian_sum over the rows `rows` (device, `count` indices into x [*][k]) only: the damping
// search's fit or validation tokens.
Status hessian_sum_rows(const GpuContext& ctx, const float* x, const int32_t* rows, int64_t count,
                        int64_t k, DeviceBuffer& S, const std::string& what);

// The column order factor_hessian takes for this Hessian sum (its `perm`) without factoring:
// dead inputs and act-order from the scaled diagonal, by quantize_gptq's functions.
Expected<std::vector<int64_t>> hessian_order(const GpuContext& ctx, const DeviceBuffer& S,
                                             int64_t sa, int64_t sb, int64_t k, int64_t tokens,
                                             bool act_order, const std::string& what);

// The factor of the Hessian whose sum's lower triangle entry (a, b) is S[a * sa + b * sb],
// accumulated over `tokens` tokens. `what` names the input in errors.
Expected<GptqFactor> factor_hessian(const GpuContext& ctx, const DeviceBuffer& S, int64_t sa,
                                    int64_t sb, int64_t k, int64_t tokens,
                                    const QuantizeSettings& s, const std::string& what);

// Quantizes W (device, [n][k] row-major) with `f`. When `dequantized` is given it receives
// the quantized weight as fp32 [n][k] on the device (QuantizedLinear::value, exactly).
Expected<QuantizedLinear> solve_gptq(const GpuContext& ctx, const float* w, int64_t n, int64_t k,
                                     const GptqFactor& f, const QuantizeSettings& s,
                                     DeviceBuffer* dequantized, const std::string& what);

// quantize_gptq's contract on the GPU: host weight and CPU Hessian in, the same result out.
Expected<QuantizedLinear> quantize_gptq_gpu(const GpuContext& ctx, const float* w, int64_t n,
                                            int64_t k, const Hessian& h, const QuantizeSettings& s);

}  // namespace qw::gptq::gpu

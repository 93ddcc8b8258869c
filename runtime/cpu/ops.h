// Element-wise and row-wise pieces of the Qwen2 forward, fp32 in and out.
#pragma once
#include <cstdint>

namespace qw::cpu {

// HF Qwen2RMSNorm: y = w * (x / sqrt(mean(x^2) + eps)); the mean is accumulated in
// double so the result does not depend on the summation order.
void rms_norm(const float* x, const float* w, int64_t n, double eps, float* y);

// SwiGLU: out[i] = silu(gate[i]) * up[i].
void silu_mul(const float* gate, const float* up, int64_t n, float* out);

// y[i] += x[i]
void add_inplace(float* y, const float* x, int64_t n);

}  // namespace qw::cpu

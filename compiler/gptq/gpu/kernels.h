// Launchers of the CUDA kernels behind GPTQ on the GPU (gptq_kernels.cu: the solver;
// forward_kernels.cu: the calibration forward; quality_kernels.cu: the held-out errors of
// --quality-report). Plain C++ interface for the host code; every
// launcher checks its arguments' sizes against the kernel's limits and returns the launch's
// cudaError_t (cudaErrorInvalidValue when they do not fit).
//
// Layouts: W [n][k] row-major (HF); Wp [k][n] (GPTQ walks columns, rows contiguous); U is the
// upper Cholesky factor of the damped inverse Hessian, row-major [k][k] (only j >= i used).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace qw::gptq::gpu {

// ---- solver (gptq_kernels.cu) -------------------------------------------------------------
// Widest lazy block the column kernel supports (its per-thread columns live in shared memory).
inline constexpr int kMaxGptqBlock = 128;

// y[i] = double(x[i]).
cudaError_t launch_to_double(const float* x, int64_t count, double* y, cudaStream_t s);
// y[i][c] = double(x[rows[i]][c]) for i < count, x [*][k] (the damping search's row subsets).
cudaError_t launch_gather_to_double(const float* x, const int32_t* rows, int64_t count, int64_t k,
                                    double* y, cudaStream_t s);
// S += X on the lower triangles of two column-major k x k sums (hessian_sum's layout), each
// entry rounded as the CPU's + (Hessian::add_sum); S's upper triangle is left alone.
cudaError_t launch_add_lower(double* S, const double* X, int64_t k, cudaStream_t s);
// S holds the Hessian sum's lower triangle: entry (a, b), a >= b, at S[a * sa + b * sb].
// diag[c] = S(c, c) * scale.
cudaError_t launch_hessian_diag(const double* S, int64_t sa, int64_t sb, int64_t k, double scale,
                                double* diag, cudaStream_t s);
// A[i][j] = H[perm i][perm j] with H = S * scale mirrored, dead inputs' diagonal 1, and
// `damp_add` added on the diagonal (quantize_gptq's hp + damp * mean_diag).
cudaError_t launch_build_damped(const double* S, int64_t sa, int64_t sb, int64_t k, double scale,
                                const int64_t* perm, const uint8_t* dead, double damp_add,
                                double* A, cudaStream_t s);
// From the factor U (row-major, upper): uf[i][j] = float(U[i][j]) for j >= i (0 below), ud = diag.
cudaError_t launch_split_factor(const double* U, int64_t k, float* uf, double* ud, cudaStream_t s);
// Wp[i][r] = dead[perm i] ? 0 : W[r][perm i].
cudaError_t launch_permute_transpose(const float* w, int64_t n, int64_t k, const int64_t* perm,
                                     const uint8_t* dead, float* wp, cudaStream_t s);
// Quantizes columns [i1, i2) of Wp (i2 - i1 <= kMaxGptqBlock) exactly as quantize_gptq's inner
// loop: group parameters at group starts, codes into codes[perm i][r], the scaled errors into
// err[i - i1][r], and the error feedback inside the block.
cudaError_t launch_gptq_block(float* wp, const double* ud, const float* uf, int64_t n, int64_t k,
                              int64_t i1, int64_t i2, int64_t group_size, bool sym,
                              const int64_t* perm, uint8_t* codes, uint16_t* scales, uint8_t* zeros,
                              float* err, cudaStream_t s);
// The lazy batch update of columns [i2, k): Wp[j][r] -= err[i - i1][r] * uf[i][j] for i in
// [i1, i2) in order, skipping uf == 0, unfused (the CPU's rounding, bit for bit).
cudaError_t launch_gptq_lazy_update(float* wp, const float* uf, const float* err, int64_t n,
                                    int64_t k, int64_t i1, int64_t i2, cudaStream_t s);
// W[r][c] = fp32(scales[g_idx c][r]) * (codes[c][r] - zeros[g_idx c][r]) (QuantizedLinear::value).
cudaError_t launch_dequantize(const uint8_t* codes, const uint16_t* scales, const uint8_t* zeros,
                              const int32_t* g_idx, int64_t n, int64_t k, float* w, cudaStream_t s);

// ---- calibration forward (forward_kernels.cu) --------------------------------------------
// y[t] = w * (x[t] * inv_rms(x[t])), as cpu::rms_norm (sum of squares in double).
cudaError_t launch_rms_norm(const float* x, const float* w, int64_t tokens, int64_t dim, double eps,
                            float* y, cudaStream_t s);
// y[t][c] += bias[c].
cudaError_t launch_add_bias(float* y, const float* bias, int64_t tokens, int64_t dim,
                            cudaStream_t s);
// Rotates `heads` vectors of head_dim per token in place (cpu::apply_rope's arithmetic); the
// tables hold cos/sin [position][head_dim / 2], pos[t] is token t's position in its sequence.
cudaError_t launch_rope(float* v, int64_t tokens, int64_t heads, int64_t head_dim,
                        const int32_t* pos, const float* cos_table, const float* sin_table,
                        cudaStream_t s);
// Causal GQA attention within each calibration sequence; start[t] is the first token of t's
// sequence, max_len the longest sequence. q/out [T][nq*hd], k/v [T][nkv*hd].
cudaError_t launch_attention(const float* q, const float* k, const float* v, int64_t tokens,
                             int64_t nq, int64_t nkv, int64_t head_dim, const int32_t* start,
                             int64_t max_len, float scale, float* out, cudaStream_t s);
// gate[i] = silu(gate[i]) * up[i], as cpu::silu_mul.
cudaError_t launch_silu_mul(float* gate, const float* up, int64_t count, cudaStream_t s);
// x[i] += y[i].
cudaError_t launch_add(float* x, const float* y, int64_t count, cudaStream_t s);

// ---- held-out errors (quality_kernels.cu) -------------------------------------------------
// S [k][k] column-major with its lower triangle set (hessian_sum): copies it to the upper one.
cudaError_t launch_mirror_lower(double* S, int64_t k, cudaStream_t s);
// Up to kMaxWeightForms quantized weights whose differences from W are measured together.
inline constexpr int kMaxWeightForms = 8;
struct WeightFormSources {
  const float* q[kMaxWeightForms];  // device [rows][k] each; null: the form of W itself
  int count;
};
// For `rows` rows of [rows][k] row-major fp32 weights: B (column-major, k x count rows) gets,
// for row i, columns count*i + f = W - Q_f (W where Q_f is null), in double (the differences
// exact).
cudaError_t launch_weight_deltas(const float* w, const WeightFormSources& q, int64_t rows,
                                 int64_t k, double* B, cudaStream_t s);
// out[j] = sum_i C[j * k + i] * B[j * k + i] for each of `cols` columns of length k.
cudaError_t launch_column_dots(const double* C, const double* B, int64_t k, int64_t cols,
                               double* out, cudaStream_t s);

}  // namespace qw::gptq::gpu

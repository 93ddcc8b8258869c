// The held-out errors of --quality-report on the GPU (quality_report.h defines them): the
// held-out Hessian H_h by hessian_sum (DSYRK in fp64) over the held-out rows of a sublayer's
// input, mirrored to a full symmetric matrix so one plain DGEMM can use it; then, per chunk of
// output rows, B = [W - Q_gptq | W - Q_rtn | W] in fp64, C = H_h B (cuBLAS DGEMM), and each
// column's dot of C and B is one row's quadratic form. The rows' forms are added on the host
// in row order, as heldout_errors does on the CPU.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/gptq/gpu/cuda_libs.h"
#include "compiler/gptq/quality_report.h"

namespace qw::gptq::gpu {

// H_h = x^T x over the `tokens` rows of x [tokens][k] (device), full k x k doubles.
Expected<DeviceBuffer> heldout_hessian(const GpuContext& ctx, const float* x, int64_t tokens,
                                       int64_t k, const std::string& what);

// sum over rows r of d_r H d_r^T, d = W - Q, for each Q in `q` (device [n][k] fp32; null: the
// form of W itself; at most kMaxWeightForms): weight_error_forms (damp_search.h) on the GPU.
// h is a mirrored Hessian (heldout_hessian); rows go through the DGEMM in chunks of about
// 256 MiB of operands, or of `chunk_rows` rows when that is set.
Expected<std::vector<double>> weight_error_forms_gpu(const GpuContext& ctx, const DeviceBuffer& h,
                                                     int64_t k, const float* w,
                                                     const std::vector<const float*>& q, int64_t n,
                                                     const std::string& what,
                                                     int64_t chunk_rows = 0);

// The three forms of one linear (weight_error_forms_gpu of Q_gptq, Q_rtn and W); w, q_gptq, q_rtn:
// device [n][k] row-major fp32; h: a heldout_hessian of the linear's input. Rows go through the
// DGEMM in chunks of about 256 MiB of operands, or of `chunk_rows` rows when that is set (tests:
// several chunks of a small n).
Expected<HeldoutErrors> heldout_errors_gpu(const GpuContext& ctx, const DeviceBuffer& h, int64_t k,
                                           const float* w, const float* q_gptq, const float* q_rtn,
                                           int64_t n, const std::string& what,
                                           int64_t chunk_rows = 0);

}  // namespace qw::gptq::gpu

#include "compiler/gptq/gpu/gptq_solver.h"

#include <algorithm>

#include "compiler/gptq/gpu/kernels.h"

namespace qw::gptq::gpu {

namespace {

// cuBLAS and cuSOLVER take int dimensions.
Status check_int_dims(int64_t a, int64_t b, const std::string& what) {
  if (a <= 0 || b <= 0 || a > 0x7fffffff || b > 0x7fffffff)
    return Status::Error(what + ": dimensions " + std::to_string(a) + " x " + std::to_string(b) +
                         " out of range for cuBLAS/cuSOLVER");
  return Status::Ok();
}

// One potrf/potri step and its info word.
Status solver_step(const GpuContext& ctx, cusolverStatus_t st, const DeviceBuffer& info,
                   const char* step, const std::string& what, bool& positive) {
  QW_RETURN_IF_ERROR(check_cusolver(st, std::string(step) + " of " + what));
  int h = 0;
  QW_RETURN_IF_ERROR(
      download(&h, info, sizeof h, ctx.stream(), std::string(step) + " info of " + what));
  if (h < 0)
    return Status::Error(std::string("internal: ") + step + " rejected argument " +
                         std::to_string(-h) + " for " + what);
  positive = h == 0;
  return Status::Ok();
}

}  // namespace

namespace {

// hessian_sum over x's first `tokens` rows (rows null) or over the rows `rows`.
Status hessian_sum_impl(const GpuContext& ctx, const float* x, const int32_t* rows, int64_t tokens,
                        int64_t k, DeviceBuffer& S, const std::string& what) {
  if (tokens <= 0) return Status::Error("GPTQ needs calibration activations (none collected)");
  QW_RETURN_IF_ERROR(check_int_dims(k, tokens, "Hessian of " + what));
  const size_t bytes = size_t(k) * size_t(k) * sizeof(double);
  if (S.size() < bytes) {
    S.reset();
    QW_ASSIGN_OR_RETURN(S, DeviceBuffer::alloc(bytes, "the Hessian of " + what));
  }
  // Tokens go through DSYRK in double, converted in chunks of about 256 MiB.
  const int64_t chunk =
      std::clamp<int64_t>((int64_t(256) << 20) / (k * int64_t(sizeof(double))), 1, tokens);
  QW_ASSIGN_OR_RETURN(DeviceBuffer xd,
                      device_array<double>(size_t(chunk * k), "activations (fp64) of " + what));
  const double one = 1.0, zero = 0.0;
  for (int64_t t0 = 0; t0 < tokens; t0 += chunk) {
    const int64_t tn = std::min(chunk, tokens - t0);
    QW_RETURN_IF_ERROR(check_cuda(
        rows ? launch_gather_to_double(x, rows + t0, tn, k, xd.as<double>(), ctx.stream())
             : launch_to_double(x + t0 * k, tn * k, xd.as<double>(), ctx.stream()),
        "fp64 conversion for the Hessian of " + what));
    QW_RETURN_IF_ERROR(check_cublas(
        ctx.api().dsyrk(ctx.cublas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, int(k), int(tn), &one,
                        xd.as<double>(), int(k), t0 == 0 ? &zero : &one, S.as<double>(), int(k)),
        "DSYRK for the Hessian of " + what));
  }
  // xd is freed on return: wait until DSYRK no longer reads it.
  return ctx.sync("the Hessian of " + what);
}

// The Hessian's diagonal scaled 2/T, as quantize_gptq reads it, on the host.
Expected<std::vector<double>> scaled_diagonal(const GpuContext& ctx, const DeviceBuffer& S,
                                              int64_t sa, int64_t sb, int64_t k, double scale,
                                              const std::string& what) {
  std::vector<double> diag(static_cast<size_t>(k));
  QW_ASSIGN_OR_RETURN(DeviceBuffer d,
                      device_array<double>(size_t(k), "Hessian diagonal of " + what));
  QW_RETURN_IF_ERROR(check_cuda(
      launch_hessian_diag(S.as<double>(), sa, sb, k, scale, d.as<double>(), ctx.stream()),
      "Hessian diagonal of " + what));
  QW_RETURN_IF_ERROR(download(diag.data(), d, size_t(k) * sizeof(double), ctx.stream(),
                              "Hessian diagonal of " + what));
  return diag;
}

}  // namespace

Status hessian_sum(const GpuContext& ctx, const float* x, int64_t tokens, int64_t k,
                   DeviceBuffer& S, const std::string& what) {
  return hessian_sum_impl(ctx, x, nullptr, tokens, k, S, what);
}

Status hessian_sum_rows(const GpuContext& ctx, const float* x, const int32_t* rows, int64_t count,
                        int64_t k, DeviceBuffer& S, const std::string& what) {
  if (!rows && count > 0) return Status::Error("internal: no rows for the Hessian of " + what);
  return hessian_sum_impl(ctx, x, rows, count, k, S, what);
}

Expected<std::vector<int64_t>> hessian_order(const GpuContext& ctx, const DeviceBuffer& S,
                                             int64_t sa, int64_t sb, int64_t k, int64_t tokens,
                                             bool act_order, const std::string& what) {
  if (tokens <= 0) return Status::Error("GPTQ needs calibration activations (none collected)");
  if (k <= 0 || S.size() < size_t(k) * size_t(k) * sizeof(double))
    return Status::Error("internal: Hessian buffer of " + what + " too small");
  QW_ASSIGN_OR_RETURN(std::vector<double> diag,
                      scaled_diagonal(ctx, S, sa, sb, k, 2.0 / double(tokens), what));
  std::vector<uint8_t> dead;
  fix_dead_diagonal(diag, dead);
  return gptq_column_order(diag, act_order);
}

Expected<GptqFactor> factor_hessian(const GpuContext& ctx, const DeviceBuffer& S, int64_t sa,
                                    int64_t sb, int64_t k, int64_t tokens,
                                    const QuantizeSettings& s, const std::string& what) {
  if (tokens <= 0) return Status::Error("GPTQ needs calibration activations (none collected)");
  QW_RETURN_IF_ERROR(check_int_dims(k, k, "Hessian of " + what));
  if (S.size() < size_t(k) * size_t(k) * sizeof(double))
    return Status::Error("internal: Hessian buffer of " + what + " too small");
  const int64_t gs = s.group_size == -1 ? k : s.group_size;
  if (gs <= 0 || k % gs != 0)
    return Status::Error("cannot quantize " + std::to_string(k) + " inputs with group_size " +
                         std::to_string(s.group_size));
  const cudaStream_t st = ctx.stream();
  const double scale = 2.0 / double(tokens);
  GptqFactor f;
  f.k = k;
  // Dead inputs, order and mean diagonal: decided on the host from the diagonal, by the
  // functions quantize_gptq uses.
  QW_ASSIGN_OR_RETURN(std::vector<double> diag, scaled_diagonal(ctx, S, sa, sb, k, scale, what));
  std::vector<uint8_t> dead;
  fix_dead_diagonal(diag, dead);
  f.perm = gptq_column_order(diag, s.act_order);
  f.g_idx = gptq_group_index(f.perm, gs);
  const double mean_diag = mean_permuted_diagonal(diag, f.perm);
  QW_ASSIGN_OR_RETURN(f.perm_dev, device_array<int64_t>(size_t(k), "GPTQ order of " + what));
  QW_ASSIGN_OR_RETURN(f.dead_dev, device_array<uint8_t>(size_t(k), "dead inputs of " + what));
  QW_ASSIGN_OR_RETURN(f.g_idx_dev, device_array<int32_t>(size_t(k), "g_idx of " + what));
  QW_RETURN_IF_ERROR(
      upload(f.perm_dev, f.perm.data(), size_t(k) * sizeof(int64_t), st, "GPTQ order of " + what));
  QW_RETURN_IF_ERROR(upload(f.dead_dev, dead.data(), size_t(k), st, "dead inputs of " + what));
  QW_RETURN_IF_ERROR(
      upload(f.g_idx_dev, f.g_idx.data(), size_t(k) * sizeof(int32_t), st, "g_idx of " + what));

  QW_ASSIGN_OR_RETURN(DeviceBuffer A,
                      device_array<double>(size_t(k * k), "the damped Hessian of " + what));
  QW_ASSIGN_OR_RETURN(DeviceBuffer info, device_array<int>(1, "cuSOLVER info"));
  const CudaMathApi& api = ctx.api();
  int lw_potrf = 0, lw_potri = 0;
  QW_RETURN_IF_ERROR(
      check_cusolver(api.potrf_buffer_size(ctx.solver(), CUBLAS_FILL_MODE_LOWER, int(k),
                                           A.as<double>(), int(k), &lw_potrf),
                     "potrf workspace query for " + what));
  QW_RETURN_IF_ERROR(
      check_cusolver(api.potri_buffer_size(ctx.solver(), CUBLAS_FILL_MODE_LOWER, int(k),
                                           A.as<double>(), int(k), &lw_potri),
                     "potri workspace query for " + what));
  const int lwork = std::max({lw_potrf, lw_potri, 1});
  QW_ASSIGN_OR_RETURN(DeviceBuffer work,
                      device_array<double>(size_t(lwork), "cuSOLVER workspace for " + what));
  // A is symmetric, so row- and column-major agree. Column-major potrf(lower) gives H = L L^T;
  // potri(lower) overwrites L with H^-1's lower triangle; potrf(lower) again gives
  // H^-1 = L2 L2^T. Read row-major, L2's storage is U = L2^T, upper, with H^-1 = U^T U:
  // quantize_gptq's u[i * k + j].
  double damp = s.damp_percent;
  for (int attempt = 0;; ++attempt) {
    QW_RETURN_IF_ERROR(check_cuda(
        launch_build_damped(S.as<double>(), sa, sb, k, scale, f.perm_dev.as<int64_t>(),
                            f.dead_dev.as<uint8_t>(), damp * mean_diag, A.as<double>(), st),
        "damped Hessian of " + what));
    bool pd = false;
    QW_RETURN_IF_ERROR(
        solver_step(ctx,
                    api.potrf(ctx.solver(), CUBLAS_FILL_MODE_LOWER, int(k), A.as<double>(), int(k),
                              work.as<double>(), lwork, info.as<int>()),
                    info, "potrf(H)", what, pd));
    if (pd)
      QW_RETURN_IF_ERROR(
          solver_step(ctx,
                      api.potri(ctx.solver(), CUBLAS_FILL_MODE_LOWER, int(k), A.as<double>(),
                                int(k), work.as<double>(), lwork, info.as<int>()),
                      info, "potri(H)", what, pd));
    if (pd)
      QW_RETURN_IF_ERROR(
          solver_step(ctx,
                      api.potrf(ctx.solver(), CUBLAS_FILL_MODE_LOWER, int(k), A.as<double>(),
                                int(k), work.as<double>(), lwork, info.as<int>()),
                      info, "potrf(H^-1)", what, pd));
    if (pd) break;
    if (attempt + 1 == kGptqDampAttempts)
      return Status::Error("GPTQ: Hessian not positive definite even with damping " +
                           std::to_string(damp));
    damp *= 10;  // deterministic fallback for degenerate calibration data, as on the CPU
  }
  QW_ASSIGN_OR_RETURN(f.uf, device_array<float>(size_t(k * k), "the Cholesky factor of " + what));
  QW_ASSIGN_OR_RETURN(f.ud, device_array<double>(size_t(k), "the Cholesky diagonal of " + what));
  QW_RETURN_IF_ERROR(
      check_cuda(launch_split_factor(A.as<double>(), k, f.uf.as<float>(), f.ud.as<double>(), st),
                 "the Cholesky factor of " + what));
  // A and the workspace are freed on return.
  QW_RETURN_IF_ERROR(ctx.sync("the Cholesky factor of " + what));
  return f;
}

Expected<QuantizedLinear> solve_gptq(const GpuContext& ctx, const float* w, int64_t n, int64_t k,
                                     const GptqFactor& f, const QuantizeSettings& s,
                                     DeviceBuffer* dequantized, const std::string& what) {
  QW_RETURN_IF_ERROR(check_quantize_shape(n, k, s));
  if (f.k != k) return Status::Error("internal: Hessian dimension mismatch for " + what);
  const int64_t B = std::max<int64_t>(1, s.block);
  if (B > kMaxGptqBlock)
    return Status::Error("GPTQ on the GPU supports blocks up to " + std::to_string(kMaxGptqBlock) +
                         " columns, not " + std::to_string(B));
  const int64_t gs = s.group_size == -1 ? k : s.group_size, G = k / gs;
  const cudaStream_t st = ctx.stream();
  QW_ASSIGN_OR_RETURN(DeviceBuffer wp,
                      device_array<float>(size_t(k * n), "the GPTQ working copy of " + what));
  QW_ASSIGN_OR_RETURN(DeviceBuffer codes,
                      device_array<uint8_t>(size_t(k * n), "the codes of " + what));
  QW_ASSIGN_OR_RETURN(DeviceBuffer scales,
                      device_array<uint16_t>(size_t(G * n), "the scales of " + what));
  QW_ASSIGN_OR_RETURN(DeviceBuffer zeros,
                      device_array<uint8_t>(size_t(G * n), "the zero points of " + what));
  QW_ASSIGN_OR_RETURN(DeviceBuffer err,
                      device_array<float>(size_t(B * n), "the GPTQ errors of " + what));
  QW_RETURN_IF_ERROR(
      check_cuda(launch_permute_transpose(w, n, k, f.perm_dev.as<int64_t>(),
                                          f.dead_dev.as<uint8_t>(), wp.as<float>(), st),
                 "GPTQ column order of " + what));
  for (int64_t i1 = 0; i1 < k; i1 += B) {
    const int64_t i2 = std::min(k, i1 + B);
    QW_RETURN_IF_ERROR(check_cuda(
        launch_gptq_block(wp.as<float>(), f.ud.as<double>(), f.uf.as<float>(), n, k, i1, i2, gs,
                          s.sym, f.perm_dev.as<int64_t>(), codes.as<uint8_t>(),
                          scales.as<uint16_t>(), zeros.as<uint8_t>(), err.as<float>(), st),
        "GPTQ columns " + std::to_string(i1) + ".." + std::to_string(i2) + " of " + what));
    QW_RETURN_IF_ERROR(
        check_cuda(launch_gptq_lazy_update(wp.as<float>(), f.uf.as<float>(), err.as<float>(), n, k,
                                           i1, i2, st),
                   "GPTQ update after column " + std::to_string(i2) + " of " + what));
  }
  QuantizedLinear q;
  q.out_features = n;
  q.in_features = k;
  q.group_size = gs;
  q.codes.resize(size_t(k * n));
  q.scales.resize(size_t(G * n));
  q.zeros.resize(size_t(G * n));
  q.g_idx = f.g_idx;
  QW_RETURN_IF_ERROR(download(q.codes.data(), codes, q.codes.size(), st, "the codes of " + what));
  QW_RETURN_IF_ERROR(
      download(q.scales.data(), scales, q.scales.size() * 2, st, "the scales of " + what));
  QW_RETURN_IF_ERROR(
      download(q.zeros.data(), zeros, q.zeros.size(), st, "the zero points of " + what));
  if (dequantized) {
    QW_ASSIGN_OR_RETURN(*dequantized,
                        device_array<float>(size_t(n * k), "the quantized weight of " + what));
    QW_RETURN_IF_ERROR(check_cuda(
        launch_dequantize(codes.as<uint8_t>(), scales.as<uint16_t>(), zeros.as<uint8_t>(),
                          f.g_idx_dev.as<int32_t>(), n, k, dequantized->as<float>(), st),
        "dequantizing " + what));
  }
  // The buffers above are freed on return.
  QW_RETURN_IF_ERROR(ctx.sync("GPTQ of " + what));
  return q;
}

Expected<QuantizedLinear> quantize_gptq_gpu(const GpuContext& ctx, const float* w, int64_t n,
                                            int64_t k, const Hessian& h,
                                            const QuantizeSettings& s) {
  QW_RETURN_IF_ERROR(check_quantize_shape(n, k, s));
  if (h.dim() != k) return Status::Error("internal: Hessian dimension mismatch");
  if (h.tokens() == 0) return Status::Error("GPTQ needs calibration activations (none collected)");
  const cudaStream_t st = ctx.stream();
  QW_ASSIGN_OR_RETURN(DeviceBuffer S, device_array<double>(h.sum().size(), "the Hessian"));
  QW_RETURN_IF_ERROR(upload(S, h.sum().data(), h.sum().size() * sizeof(double), st, "the Hessian"));
  // Hessian keeps its lower triangle row-major: entry (a, b), a >= b, at a * k + b.
  QW_ASSIGN_OR_RETURN(GptqFactor f, factor_hessian(ctx, S, k, 1, k, h.tokens(), s, "the weight"));
  QW_ASSIGN_OR_RETURN(DeviceBuffer wd, device_array<float>(size_t(n * k), "the weight"));
  QW_RETURN_IF_ERROR(upload(wd, w, size_t(n * k) * sizeof(float), st, "the weight"));
  return solve_gptq(ctx, wd.as<float>(), n, k, f, s, nullptr, "the weight");
}

}  // namespace qw::gptq::gpu

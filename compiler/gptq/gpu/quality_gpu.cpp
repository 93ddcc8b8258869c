#include "compiler/gptq/gpu/quality_gpu.h"

#include <algorithm>
#include <vector>

#include "compiler/gptq/gpu/gptq_solver.h"
#include "compiler/gptq/gpu/kernels.h"

namespace qw::gptq::gpu {

namespace {

// Bytes of B (and of C) per chunk of rows: the DGEMM stays large, the memory bounded.
constexpr int64_t kChunkBytes = int64_t(256) << 20;

}  // namespace

Expected<DeviceBuffer> heldout_hessian(const GpuContext& ctx, const float* x, int64_t tokens,
                                       int64_t k, const std::string& what) {
  DeviceBuffer S;
  QW_RETURN_IF_ERROR(hessian_sum(ctx, x, tokens, k, S, "held-out " + what));
  QW_RETURN_IF_ERROR(check_cuda(launch_mirror_lower(S.as<double>(), k, ctx.stream()),
                                "mirroring the held-out Hessian of " + what));
  return S;
}

Expected<std::vector<double>> weight_error_forms_gpu(const GpuContext& ctx, const DeviceBuffer& h,
                                                     int64_t k, const float* w,
                                                     const std::vector<const float*>& q, int64_t n,
                                                     const std::string& what, int64_t chunk_rows) {
  const int64_t nf = int64_t(q.size());
  if (n <= 0 || k <= 0 || k > 0x7fffffff)
    return Status::Error("weight error forms of " + what + ": bad shape");
  if (nf <= 0 || nf > kMaxWeightForms)
    return Status::Error("internal: " + std::to_string(nf) + " weight error forms of " + what);
  if (h.size() < size_t(k) * size_t(k) * sizeof(double))
    return Status::Error("internal: Hessian for the weight errors of " + what + " too small");
  const cudaStream_t st = ctx.stream();
  const int64_t rows = std::clamp<int64_t>(
      chunk_rows > 0 ? chunk_rows : kChunkBytes / (nf * k * int64_t(sizeof(double))), 1, n);
  QW_ASSIGN_OR_RETURN(DeviceBuffer B, device_array<double>(size_t(nf * rows * k),
                                                           "weight error operands of " + what));
  QW_ASSIGN_OR_RETURN(DeviceBuffer C, device_array<double>(size_t(nf * rows * k),
                                                           "weight error products of " + what));
  QW_ASSIGN_OR_RETURN(DeviceBuffer dots,
                      device_array<double>(size_t(nf * rows), "weight error forms of " + what));
  std::vector<double> forms(size_t(nf * rows));
  std::vector<double> total(size_t(nf), 0.0);
  const double one = 1.0, zero = 0.0;
  for (int64_t r0 = 0; r0 < n; r0 += rows) {
    const int64_t m = std::min(rows, n - r0), cols = nf * m;
    WeightFormSources src{};
    src.count = int(nf);
    for (int64_t f = 0; f < nf; ++f) src.q[f] = q[size_t(f)] ? q[size_t(f)] + r0 * k : nullptr;
    QW_RETURN_IF_ERROR(check_cuda(launch_weight_deltas(w + r0 * k, src, m, k, B.as<double>(), st),
                                  "weight error operands of " + what));
    // Column-major: C (k x cols) = H (k x k, symmetric) * B (k x cols).
    QW_RETURN_IF_ERROR(
        check_cublas(ctx.api().dgemm(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, int(k), int(cols),
                                     int(k), &one, h.as<double>(), int(k), B.as<double>(), int(k),
                                     &zero, C.as<double>(), int(k)),
                     "DGEMM for the weight errors of " + what));
    QW_RETURN_IF_ERROR(check_cuda(
        launch_column_dots(C.as<double>(), B.as<double>(), k, cols, dots.as<double>(), st),
        "weight error forms of " + what));
    QW_RETURN_IF_ERROR(download(forms.data(), dots, size_t(cols) * sizeof(double), st,
                                "weight error forms of " + what));
    // Rows in order, as weight_error_forms adds them on the CPU.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t f = 0; f < nf; ++f) total[size_t(f)] += forms[size_t(nf * i + f)];
  }
  return total;
}

Expected<HeldoutErrors> heldout_errors_gpu(const GpuContext& ctx, const DeviceBuffer& h, int64_t k,
                                           const float* w, const float* q_gptq, const float* q_rtn,
                                           int64_t n, const std::string& what, int64_t chunk_rows) {
  QW_ASSIGN_OR_RETURN(std::vector<double> f,
                      weight_error_forms_gpu(ctx, h, k, w, {q_gptq, q_rtn, nullptr}, n,
                                             "held-out " + what, chunk_rows));
  return HeldoutErrors{f[0], f[1], f[2]};
}

}  // namespace qw::gptq::gpu

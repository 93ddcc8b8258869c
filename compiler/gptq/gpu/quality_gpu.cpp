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

Expected<HeldoutErrors> heldout_errors_gpu(const GpuContext& ctx, const DeviceBuffer& h, int64_t k,
                                           const float* w, const float* q_gptq, const float* q_rtn,
                                           int64_t n, const std::string& what, int64_t chunk_rows) {
  if (n <= 0 || k <= 0 || k > 0x7fffffff)
    return Status::Error("held-out errors of " + what + ": bad shape");
  if (h.size() < size_t(k) * size_t(k) * sizeof(double))
    return Status::Error("internal: held-out Hessian of " + what + " too small");
  const cudaStream_t st = ctx.stream();
  const int64_t rows = std::clamp<int64_t>(
      chunk_rows > 0 ? chunk_rows : kChunkBytes / (3 * k * int64_t(sizeof(double))), 1, n);
  QW_ASSIGN_OR_RETURN(DeviceBuffer B, device_array<double>(size_t(3 * rows * k),
                                                           "held-out error operands of " + what));
  QW_ASSIGN_OR_RETURN(DeviceBuffer C, device_array<double>(size_t(3 * rows * k),
                                                           "held-out error products of " + what));
  QW_ASSIGN_OR_RETURN(DeviceBuffer dots,
                      device_array<double>(size_t(3 * rows), "held-out error forms of " + what));
  std::vector<double> forms(size_t(3 * rows));
  HeldoutErrors total;
  const double one = 1.0, zero = 0.0;
  for (int64_t r0 = 0; r0 < n; r0 += rows) {
    const int64_t m = std::min(rows, n - r0), cols = 3 * m;
    QW_RETURN_IF_ERROR(check_cuda(
        launch_weight_deltas(w + r0 * k, q_gptq + r0 * k, q_rtn + r0 * k, m, k, B.as<double>(), st),
        "held-out error operands of " + what));
    // Column-major: C (k x cols) = H (k x k, symmetric) * B (k x cols).
    QW_RETURN_IF_ERROR(
        check_cublas(ctx.api().dgemm(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, int(k), int(cols),
                                     int(k), &one, h.as<double>(), int(k), B.as<double>(), int(k),
                                     &zero, C.as<double>(), int(k)),
                     "DGEMM for the held-out errors of " + what));
    QW_RETURN_IF_ERROR(check_cuda(
        launch_column_dots(C.as<double>(), B.as<double>(), k, cols, dots.as<double>(), st),
        "held-out error forms of " + what));
    QW_RETURN_IF_ERROR(download(forms.data(), dots, size_t(cols) * sizeof(double), st,
                                "held-out error forms of " + what));
    for (int64_t i = 0; i < m; ++i) {
      total.gptq += forms[size_t(3 * i)];
      total.rtn += forms[size_t(3 * i + 1)];
      total.reference += forms[size_t(3 * i + 2)];
    }
  }
  return total;
}

}  // namespace qw::gptq::gpu

#include "gpu/int4_linear.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "artifact/tensor_names.h"
#include "kernels_templates/int4_index.cuh"
#include "quant/int4_artifact.h"

namespace qw::gpu {
namespace {

constexpr const char* kProjTensor[4] = {names::kQkvWeight, names::kOProj, names::kGateUp,
                                        names::kDown};
constexpr const char* kProjKernel[4] = {"gemv_int4_qkv", "gemv_int4_o_res",
                                        "gemv_int4_gate_up_swiglu", "gemv_int4_down_res"};
constexpr int kProjMode[4] = {0, 1, 2, 1};
constexpr int kRowsPerLaunch[2] = {8, 16};  // m8, m16

}  // namespace

Expected<Int4Linear> Int4Linear::create(const Artifact& artifact, int tp_rank,
                                        const DeviceWeights& weights, const KernelModule& module,
                                        int device) {
  Int4Linear q;
  for (int p = 0; p < 4; ++p)
    for (int v = 0; v < 2; ++v) {
      QW_ASSIGN_OR_RETURN(q.gemm_[p][v],
                          module.get(std::string(kProjKernel[p]) + (v ? "_m16" : "_m8")));
    }
  QW_ASSIGN_OR_RETURN(q.dequant_, module.get("int4_dequant_f16"));
  QW_CUDA(cudaDeviceGetAttribute(&q.num_sms_, cudaDevAttrMultiProcessorCount, device));
  // QW_INT4_SPLITS=N or N,N,N,N (qkv, o, gate_up, down; 0 = planned): A/B of the split-K
  // factor on the device without rebuilding.
  if (const char* v = std::getenv("QW_INT4_SPLITS")) {
    int p = 0;
    for (const char* c = v; p < 4 && *c; ++p) {
      q.splits_override_[p] = std::max(0, std::atoi(c));
      while (*c && *c != ',') ++c;
      if (*c == ',') ++c;
    }
    for (int r = p; p == 1 && r < 4; ++r) q.splits_override_[r] = q.splits_override_[0];
  }

  long long ws_floats = 1, counter_ints = 1;
  const int64_t layers = artifact.config().num_hidden_layers;
  for (int64_t l = 0; l < layers; ++l)
    for (int p = 0; p < 4; ++p) {
      const std::string name = names::layer(l, kProjTensor[p]);
      QW_ASSIGN_OR_RETURN(quant::Int4Matrix m, quant::int4_matrix(artifact, name, tp_rank));
      QW_ASSIGN_OR_RETURN(TensorView packed, artifact.tensor(name, tp_rank));
      // Companions live in the same section as the packed words; their device address is the
      // arena plus their offset from the section's start in the mapping.
      const uint8_t* section = packed.data - packed.offset_in_section;
      const uint64_t section_bytes = weights.arena.size();
      auto device_ptr = [&](const void* host, uint64_t bytes,
                            const char* what) -> Expected<const void*> {
        const auto* h = static_cast<const uint8_t*>(host);
        if (h < section || uint64_t(h - section) + bytes > section_bytes || (h - section) % 16)
          return Status::Error(artifact.path() + ": the " + what + " of " + name +
                               " are not 16-byte aligned in its rank's weights section");
        return static_cast<const void*>(weights.arena.as<const uint8_t>() + (h - section));
      };
      const uint64_t groups = uint64_t(m.groups()), n_pad = uint64_t(m.padded_rows);
      Matrix d;
      QW_ASSIGN_OR_RETURN(d.packed, device_ptr(m.packed, packed.size, "packed words"));
      QW_ASSIGN_OR_RETURN(d.scales, device_ptr(m.scales, groups * n_pad * 2, "scales"));
      if (m.zeros) {
        QW_ASSIGN_OR_RETURN(const void* z, device_ptr(m.zeros, groups * n_pad, "zeros"));
        d.zeros = static_cast<const unsigned char*>(z);
      }
      if (m.perm_tensor) {
        QW_ASSIGN_OR_RETURN(const void* pp, device_ptr(m.perm_tensor, uint64_t(m.cols) * 4,
                                                       "act-order permutation"));
        d.perm = static_cast<const int*>(pp);
      }
      d.zero_point = m.zero_point;
      d.rows = int(m.rows), d.cols = int(m.cols), d.padded_rows = int(m.padded_rows),
      d.group = int(m.group_size);
      for (int v = 0; v < 2; ++v) {
        d.splits[v] = q.plan_splits(d, v + 1, q.splits_override_[p]);
        ws_floats = std::max(
            ws_floats, qw4_workspace_floats(d.padded_rows / 64, d.splits[v], kRowsPerLaunch[v],
                                            d.padded_rows, kProjMode[p]));
      }
      counter_ints =
          std::max(counter_ints, (long long)qw4_counter_ints(d.padded_rows, d.rows, kProjMode[p]));
      q.max_dense_ = std::max(q.max_dense_, size_t(m.rows) * size_t(m.cols));
      q.layers_.push_back(d);
    }
  // The group size, so the shared memory, is one per projection: layer 0's says it.
  for (int p = 0; layers > 0 && p < 4; ++p)
    for (int v = 0; v < 2; ++v) {
      const int smem = qw4_smem_bytes(q.matrix(Int4Proj(p), 0).group / 16, v + 1);
      QW_CUDA(cudaKernelSetAttributeForDevice(
          q.gemm_[p][v], cudaFuncAttributeMaxDynamicSharedMemorySize, smem, device));
      // Two blocks per SM need the largest shared-memory carveout.
      QW_CUDA(cudaKernelSetAttributeForDevice(q.gemm_[p][v],
                                              cudaFuncAttributePreferredSharedMemoryCarveout,
                                              cudaSharedmemCarveoutMaxShared, device));
    }
  QW_ASSIGN_OR_RETURN(q.ws_, DeviceBuffer::alloc(size_t(ws_floats) * 4, "the INT4 GEMM workspace"));
  QW_ASSIGN_OR_RETURN(q.counters_,
                      DeviceBuffer::alloc(size_t(counter_ints) * 4, "the INT4 GEMM counters"));
  // The kernels leave the counters at zero after every launch; they start there once.
  QW_CUDA(cudaMemset(q.counters_.get(), 0, q.counters_.size()));
  return q;
}

int Int4Linear::plan_splits(const Matrix& m, int mh, int override_splits) const {
  const int chunks = m.cols / 16 / qw4_kernel_chunk_slabs(m.group / 16, mh);
  if (override_splits > 0) return std::min(override_splits, chunks);
  return qw4_plan_splits(m.padded_rows / 64, chunks, num_sms_ * QW4_BLOCKS_PER_SM);
}

Status Int4Linear::multiply(Int4Proj p, int layer, const void* x, int rows, float* y, void* yh,
                            cudaStream_t stream, bool pdl) const {
  if (rows < 1 || rows > kMaxDirectRows)
    return Errorf("INT4 GEMM of %d rows (1..%d)", rows, kMaxDirectRows);
  const Matrix& m = matrix(p, layer);
  const int pi = int(p);
  const int out_cols = p == Int4Proj::GateUpSwiglu ? m.rows / 2 : m.rows;
  // Launches of 16 rows, the remainder in one of 8 when it fits: the m8 kernel reads the
  // weights with twice the blocks per SM, faster at small batches.
  for (int r0 = 0; r0 < rows;) {
    const int left = rows - r0;
    const int v = left > 8 ? 1 : 0;
    const int n = std::min(left, kRowsPerLaunch[v]);
    const void* xr = static_cast<const uint16_t*>(x) + size_t(r0) * size_t(m.cols);
    float* yr = y ? y + size_t(r0) * size_t(m.rows) : nullptr;
    void* yhr = yh ? static_cast<void*>(static_cast<uint16_t*>(yh) + size_t(r0) * size_t(out_cols))
                   : nullptr;
    QW_RETURN_IF_ERROR(
        launch_pdl(pdl, gemm_[pi][v], dim3(unsigned(m.padded_rows / 64), unsigned(m.splits[v])),
                   dim3(QW4_THREADS), size_t(qw4_smem_bytes(m.group / 16, v + 1)), stream, m.packed,
                   m.scales, m.zeros, m.perm, m.zero_point, xr, yr, yhr, ws_.as<float>(),
                   counters_.as<int>(), m.rows, m.padded_rows, n));
    r0 += n;
  }
  return Status::Ok();
}

Status Int4Linear::dequantize(Int4Proj p, int layer, void* out, cudaStream_t stream) const {
  const Matrix& m = matrix(p, layer);
  return launch(dequant_, dim3(unsigned(m.padded_rows / 64), unsigned((m.cols + 63) / 64)),
                dim3(128), 0, stream, m.packed, m.scales, m.zeros, m.perm, m.zero_point, m.cols,
                m.rows, m.padded_rows, m.group, out, static_cast<long long>(m.cols));
}

}  // namespace qw::gpu

#include "compiler/gptq/int4_emitter.h"

#include <algorithm>
#include <numeric>

#include "artifact_format.h"
#include "compiler/gptq/gptq_tensors.h"
#include "quant/int4_layout.h"

namespace qw::gptq {

namespace {

std::string base_of(const std::string& weight_name) {
  const std::string suffix = ".weight";
  return weight_name.substr(0, weight_name.size() - suffix.size());
}

template <typename T>
std::span<const uint8_t> bytes_of(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

// The rank's input features in packed order and, per packed group, the source group.
struct InputOrder {
  std::vector<int64_t> cols;        // packed row k <- source input feature cols[k]
  std::vector<int32_t> src_group;   // per packed group
  int64_t group_size = 0;
  bool permuted = false;
};

Expected<InputOrder> input_order(const QuantTensorPlan& t, const QuantizedLinear& q, int rank, int tp) {
  InputOrder o;
  const int64_t c0 = t.col_begin, cn = t.col_count, gs = q.group_size;
  const std::string where = "tensor " + t.name + " (rank " + std::to_string(rank) + " of --tp " +
                            std::to_string(tp) + ")";
  if (cn % quant::kInt4TileK != 0)
    return Status::Error(where + ": " + std::to_string(cn) +
                         " input features per rank is not a multiple of 16");
  o.cols.resize(size_t(cn));
  std::iota(o.cols.begin(), o.cols.end(), c0);
  if (gs == q.in_features) {  // one group per output: every rank keeps the same scales
    o.group_size = cn;
    o.src_group = {0};
    return o;
  }
  o.group_size = gs;
  if (q.trivial_g_idx()) {
    if (c0 % gs != 0 || cn % gs != 0)
      return Status::Error(where + ": group_size " + std::to_string(gs) + " does not divide the " +
                           std::to_string(cn) + " input features of each rank; groups may not "
                           "straddle ranks (use a smaller --tp or group size)");
    for (int64_t g = 0; g < cn / gs; ++g) o.src_group.push_back(int32_t(c0 / gs + g));
    return o;
  }
  // Act-order: sort the rank's inputs by group so each group is a contiguous run of packed
  // rows; the runtime gathers x through the stored permutation.
  o.permuted = true;
  std::stable_sort(o.cols.begin(), o.cols.end(), [&](int64_t a, int64_t b) {
    return q.g_idx[size_t(a)] < q.g_idx[size_t(b)];
  });
  for (int64_t k = 0; k < cn; k += gs) {
    const int32_t g = q.g_idx[size_t(o.cols[size_t(k)])];
    for (int64_t j = k; j < k + gs; ++j)
      if (j >= cn || q.g_idx[size_t(o.cols[size_t(j)])] != g)
        return Status::Error(where + ": act-order group " + std::to_string(g) +
                             " does not have its " + std::to_string(gs) +
                             " input features on this rank (g_idx groups straddle TP ranks); "
                             "compile with --tp 1");
    o.src_group.push_back(g);
  }
  return o;
}

}  // namespace

uint64_t Int4Emitter::approx_bytes(const QuantTensorPlan& t) {
  const int64_t np = quant::int4_padded_rows(t.rows());
  return uint64_t(t.col_count) * uint64_t(np) / 2 + uint64_t(np) * 2 * uint64_t(t.col_count / 32 + 1);
}

Status Int4Emitter::emit(const QuantTensorPlan& t, int rank, int tp, uint32_t section,
                         ProgressBar& bar, uint64_t& bytes_read) {
  const int64_t N = t.rows(), K = t.col_count, NP = quant::int4_padded_rows(N);
  std::vector<uint8_t> codes;      // [K][NP]
  std::vector<uint16_t> scales;    // [G][NP]
  std::vector<uint8_t> zeros;      // [G][NP]
  InputOrder order;
  std::vector<int32_t> first_g_idx;
  int64_t row0 = 0;
  for (const QuantPiece& p : t.pieces) {
    QW_ASSIGN_OR_RETURN(QuantizedLinear q, read_gptq_linear(q_, p.base, cfg_, p.src_rows, t.src_cols));
    bytes_read += uint64_t(q.codes.size()) / 2 + q.scales.size() * 3;
    if (first_g_idx.empty()) {
      first_g_idx = q.g_idx;
      QW_ASSIGN_OR_RETURN(order, input_order(t, q, rank, tp));
      codes.assign(size_t(K * NP), uint8_t(quant::kSymmetricZero));
      scales.assign(order.src_group.size() * size_t(NP), 0);
      zeros.assign(order.src_group.size() * size_t(NP), uint8_t(quant::kSymmetricZero));
    } else if (q.g_idx != first_g_idx) {
      // Fused layers share one input and so one permutation: AutoGPTQ derives act-order from
      // the shared Hessian, which makes q/k/v (gate/up) agree.
      return Status::Error("tensor " + p.base + ".g_idx differs from " + t.pieces[0].base +
                           ".g_idx; layers fused into " + t.name + " must share their act-order");
    }
    for (int64_t k = 0; k < K; ++k) {
      const int64_t c = order.cols[size_t(k)];
      uint8_t* dst = &codes[size_t(k * NP + row0)];
      for (int64_t i = 0; i < p.row_count; ++i) dst[i] = q.code(c, p.row_begin + i);
    }
    for (size_t g = 0; g < order.src_group.size(); ++g) {
      const int64_t sg = order.src_group[g];
      for (int64_t i = 0; i < p.row_count; ++i) {
        scales[g * size_t(NP) + size_t(row0 + i)] = q.scales[size_t(sg * q.out_features + p.row_begin + i)];
        zeros[g * size_t(NP) + size_t(row0 + i)] = q.zeros[size_t(sg * q.out_features + p.row_begin + i)];
      }
    }
    row0 += p.row_count;
  }
  const int64_t G = int64_t(order.src_group.size());
  const bool symmetric = std::all_of(zeros.begin(), zeros.end(),
                                     [](uint8_t z) { return z == quant::kSymmetricZero; });
  std::vector<uint32_t> packed(size_t(quant::int4_packed_words(K, NP)));
  quant::pack_int4(codes.data(), K, NP, packed.data());
  codes = {};

  const std::string base = base_of(t.name);
  QuantRecord qr;
  qr.group_size = int(order.group_size);
  qr.symmetric = symmetric;
  qr.act_order = order.permuted;
  qr.scales_tensor = base + ".scales";
  if (!symmetric) qr.zeros_tensor = base + ".zeros";
  if (order.permuted) qr.perm_tensor = base + ".perm";
  qr.packing = quant::kInt4Packing;
  qr.rows = N;
  qr.cols = K;
  qr.zero_point = quant::kSymmetricZero;

  auto put = [&](const std::string& name, DType dtype, std::vector<int64_t> shape,
                 std::span<const uint8_t> data, std::optional<QuantRecord> quant) -> Status {
    QW_ASSIGN_OR_RETURN(uint64_t offset, w_.align(kTensorAlignment));
    QW_RETURN_IF_ERROR(w_.write(data));
    TensorRecord rec{name, dtype, std::move(shape), rank, section, offset, data.size(), t.layout,
                     t.tp_split};
    rec.quant = std::move(quant);
    w_.add_tensor(std::move(rec));
    bar.advance(data.size());
    return Status::Ok();
  };
  QW_RETURN_IF_ERROR(put(t.name, DType::I32, {K / quant::kInt4TileK, 2 * NP}, bytes_of(packed), qr));
  QW_RETURN_IF_ERROR(put(qr.scales_tensor, DType::F16, {G, NP}, bytes_of(scales), std::nullopt));
  if (!symmetric) QW_RETURN_IF_ERROR(put(qr.zeros_tensor, DType::U8, {G, NP}, bytes_of(zeros), std::nullopt));
  if (order.permuted) {
    std::vector<int32_t> perm(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) perm[size_t(k)] = int32_t(order.cols[size_t(k)] - t.col_begin);
    QW_RETURN_IF_ERROR(put(qr.perm_tensor, DType::I32, {K}, bytes_of(perm), std::nullopt));
  }
  return Status::Ok();
}

}  // namespace qw::gptq

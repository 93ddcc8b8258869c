#include "quant/int4_artifact.h"

#include <cstring>

#include "quant/int4_layout.h"

namespace qw::quant {

namespace {

const fb::Tensor* find_fb_tensor(const Artifact& a, std::string_view name, int tp_rank) {
  const auto* ts = a.metadata().tensors();
  if (!ts) return nullptr;
  for (const fb::Tensor* t : *ts)
    if (t->name() && t->name()->string_view() == name && t->tp_rank() == tp_rank) return t;
  return nullptr;
}

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

// A companion tensor with the expected dtype and shape.
Expected<TensorView> companion(const Artifact& a, const std::string& owner, const char* field,
                               const std::string& name, int rank, DType dtype,
                               std::vector<int64_t> shape) {
  auto v = a.tensor(name, rank);
  if (!v.ok()) return Status::Error("tensor " + owner + ": quant." + field + " names " + name + ": " +
                                    v.status().message());
  if (v->dtype != dtype || v->shape != shape)
    return Status::Error("tensor " + owner + ": quant." + field + " tensor " + name +
                         " has the wrong dtype or shape");
  return std::move(v).value();
}

}  // namespace

bool is_quantized(const Artifact& a, std::string_view name, int tp_rank) {
  const fb::Tensor* t = find_fb_tensor(a, name, tp_rank);
  return t && t->quant();
}

Expected<Int4Matrix> int4_matrix(const Artifact& a, std::string_view name, int tp_rank) {
  const std::string n(name);
  const fb::Tensor* t = find_fb_tensor(a, name, tp_rank);
  if (!t) return Status::Error("tensor " + n + " (rank " + std::to_string(tp_rank) + ") not found");
  const fb::QuantParams* q = t->quant();
  if (!q) return Status::Error("tensor " + n + " is not quantized");
  if (str(q->method()) != "gptq")
    return Status::Error("tensor " + n + ": quant.method \"" + str(q->method()) + "\" unsupported");
  if (q->bits() != 4)
    return Status::Error("tensor " + n + ": quant.bits " + std::to_string(q->bits()) + " unsupported");
  if (str(q->packing()) != kInt4Packing)
    return Status::Error("tensor " + n + ": quant.packing \"" + str(q->packing()) + "\" unsupported");
  Int4Matrix m;
  m.name = n;
  m.rows = q->rows();
  m.cols = q->cols();
  m.padded_rows = int4_padded_rows(m.rows);
  m.group_size = q->group_size();
  m.zero_point = q->zero_point();
  if (m.rows <= 0 || m.cols <= 0 || m.cols % kInt4TileK || m.group_size <= 0 ||
      m.cols % m.group_size)
    return Status::Error("tensor " + n + ": quant.rows/cols/group_size inconsistent");
  QW_ASSIGN_OR_RETURN(TensorView w, a.tensor(name, tp_rank));
  const std::vector<int64_t> wshape = {m.cols / kInt4TileK, 2 * m.padded_rows};
  if (w.dtype != DType::I32 || w.shape != wshape ||
      w.size != uint64_t(int4_packed_words(m.cols, m.padded_rows)) * 4)
    return Status::Error("tensor " + n + ": packed weight must be I32 [cols/16, 2*padded_rows]");
  m.packed = reinterpret_cast<const uint32_t*>(w.data);
  const int64_t g = m.groups();
  QW_ASSIGN_OR_RETURN(TensorView s, companion(a, n, "scales_tensor", str(q->scales_tensor()),
                                              tp_rank, DType::F16, {g, m.padded_rows}));
  m.scales = reinterpret_cast<const uint16_t*>(s.data);
  if (q->zeros_tensor() && q->zeros_tensor()->size()) {
    QW_ASSIGN_OR_RETURN(TensorView z, companion(a, n, "zeros_tensor", str(q->zeros_tensor()),
                                                 tp_rank, DType::U8, {g, m.padded_rows}));
    m.zeros = z.data;
  }
  if (q->perm_tensor() && q->perm_tensor()->size()) {
    QW_ASSIGN_OR_RETURN(TensorView p, companion(a, n, "perm_tensor", str(q->perm_tensor()),
                                                tp_rank, DType::I32, {m.cols}));
    m.perm.resize(size_t(m.cols));
    std::memcpy(m.perm.data(), p.data, size_t(m.cols) * 4);
  }
  QW_RETURN_IF_ERROR(finalize_int4_matrix(m));
  return m;
}

}  // namespace qw::quant

#include "quant/int4_artifact.h"

#include <cstring>

#include "artifact/tensor_names.h"
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
    m.perm_tensor = reinterpret_cast<const int32_t*>(p.data);
  }
  QW_RETURN_IF_ERROR(finalize_int4_matrix(m));
  return m;
}

}  // namespace qw::quant

namespace qw::quant {

Expected<std::optional<Int4KernelConstants>> int4_kernel_constants(const Artifact& a) {
  const std::string first = names::layer(0, names::kQkvWeight);
  if (a.config().num_hidden_layers <= 0 || !is_quantized(a, first, 0))
    return std::optional<Int4KernelConstants>();
  Int4KernelConstants k;
  int* const fields[] = {&k.group_qkv, &k.group_o, &k.group_gate_up, &k.group_down};
  const char* const suffixes[] = {names::kQkvWeight, names::kOProj, names::kGateUp, names::kDown};
  for (int64_t l = 0; l < a.config().num_hidden_layers; ++l)
    for (int i = 0; i < 4; ++i) {
      const std::string name = names::layer(l, suffixes[i]);
      const fb::Tensor* t = find_fb_tensor(a, name, 0);
      if (!t || !t->quant())
        return Status::Error("tensor " + name + ": INT4 artifact has this weight unquantized or missing");
      const int g = int(t->quant()->group_size());
      if (l == 0) {
        *fields[i] = g;
      } else if (*fields[i] != g) {
        return Status::Error("tensor " + name + ": quant.group_size " + std::to_string(g) +
                             " differs from layer 0's " + std::to_string(*fields[i]) +
                             " (the GPU kernels are compiled for one group size per weight kind)");
      }
    }
  return std::optional<Int4KernelConstants>(k);
}

}  // namespace qw::quant

#include "compiler/gptq/gptq_tensors.h"

#include <cstring>

#include "core/half.h"

namespace qw::gptq {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

Expected<const SafetensorInfo*> expect(const Checkpoint& c, const std::string& name, DType dtype,
                                       const std::vector<int64_t>& shape) {
  QW_ASSIGN_OR_RETURN(const SafetensorInfo* t, c.find(name));
  if (t->dtype != dtype)
    return Status::Error("tensor " + name + " has dtype " + std::string(dtype_name(t->dtype)) +
                         ", GPTQ needs " + std::string(dtype_name(dtype)));
  if (t->shape != shape)
    return Status::Error("tensor " + name + " has shape " + shape_str(t->shape) + ", expected " +
                         shape_str(shape));
  return t;
}

uint32_t word_at(const SafetensorInfo* t, int64_t i) {
  uint32_t w;
  std::memcpy(&w, t->data + 4 * i, 4);
  return w;
}

}  // namespace

float QuantizedLinear::value(int64_t n, int64_t k) const {
  const size_t gi = size_t(int64_t(g_idx[size_t(k)]) * out_features + n);
  return f16_to_f32(scales[gi]) * float(int(code(k, n)) - int(zeros[gi]));
}

bool QuantizedLinear::trivial_g_idx() const {
  for (int64_t k = 0; k < in_features; ++k)
    if (g_idx[size_t(k)] != k / group_size) return false;
  return true;
}

Expected<QuantizedLinear> read_gptq_linear(const Checkpoint& ckpt, const std::string& base,
                                           const GptqConfig& cfg, int64_t N, int64_t K) {
  QuantizedLinear q;
  q.out_features = N;
  q.in_features = K;
  q.group_size = cfg.group_size == -1 ? K : cfg.group_size;
  if (K % 8 != 0 || N % 8 != 0 || K % q.group_size != 0)
    return Status::Error(base + ": shape [" + std::to_string(N) + ", " + std::to_string(K) +
                         "] does not fit 4-bit GPTQ packing with group_size " +
                         std::to_string(cfg.group_size));
  const int64_t G = q.groups();
  QW_ASSIGN_OR_RETURN(const SafetensorInfo* qw, expect(ckpt, base + ".qweight", DType::I32, {K / 8, N}));
  QW_ASSIGN_OR_RETURN(const SafetensorInfo* qz, expect(ckpt, base + ".qzeros", DType::I32, {G, N / 8}));
  QW_ASSIGN_OR_RETURN(const SafetensorInfo* sc, expect(ckpt, base + ".scales", DType::F16, {G, N}));
  q.codes.resize(size_t(K * N));
  for (int64_t i = 0; i < K / 8; ++i)
    for (int64_t n = 0; n < N; ++n) {
      const uint32_t w = word_at(qw, i * N + n);
      for (int j = 0; j < 8; ++j) q.codes[size_t((8 * i + j) * N + n)] = uint8_t((w >> (4 * j)) & 0xf);
    }
  // v1 stores zero - 1; adding the 1 back without wrapping is what AutoGPTQ's kernels do.
  const int add = cfg.format == CheckpointFormat::kGptqV1 ? 1 : 0;
  q.zeros.resize(size_t(G * N));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t m = 0; m < N / 8; ++m) {
      const uint32_t w = word_at(qz, g * (N / 8) + m);
      for (int j = 0; j < 8; ++j) q.zeros[size_t(g * N + 8 * m + j)] = uint8_t(((w >> (4 * j)) & 0xf) + add);
    }
  q.scales.resize(size_t(G * N));
  std::memcpy(q.scales.data(), sc->data, q.scales.size() * 2);
  q.g_idx.resize(size_t(K));
  if (ckpt.has(base + ".g_idx")) {
    QW_ASSIGN_OR_RETURN(const SafetensorInfo* gi, expect(ckpt, base + ".g_idx", DType::I32, {K}));
    std::memcpy(q.g_idx.data(), gi->data, size_t(K) * 4);
    for (int64_t k = 0; k < K; ++k)
      if (q.g_idx[size_t(k)] < 0 || q.g_idx[size_t(k)] >= G)
        return Status::Error("tensor " + base + ".g_idx: entry " + std::to_string(k) + " = " +
                             std::to_string(q.g_idx[size_t(k)]) + " is not a group in [0, " +
                             std::to_string(G) + ")");
  } else {
    for (int64_t k = 0; k < K; ++k) q.g_idx[size_t(k)] = int32_t(k / q.group_size);
  }
  return q;
}

Status write_gptq_linear(SafetensorsWriter& w, const std::string& base, const QuantizedLinear& q,
                         CheckpointFormat format) {
  const int64_t N = q.out_features, K = q.in_features, G = q.groups();
  std::vector<int32_t> qweight(size_t(K / 8 * N), 0), qzeros(size_t(G * N / 8), 0);
  for (int64_t i = 0; i < K / 8; ++i)
    for (int64_t n = 0; n < N; ++n) {
      uint32_t word = 0;
      for (int j = 0; j < 8; ++j) word |= uint32_t(q.code(8 * i + j, n) & 0xf) << (4 * j);
      qweight[size_t(i * N + n)] = int32_t(word);
    }
  const int sub = format == CheckpointFormat::kGptqV1 ? 1 : 0;
  for (int64_t g = 0; g < G; ++g)
    for (int64_t m = 0; m < N / 8; ++m) {
      uint32_t word = 0;
      for (int j = 0; j < 8; ++j) {
        const int z = int(q.zeros[size_t(g * N + 8 * m + j)]) - sub;
        if (z < 0 || z > 15)
          return Status::Error(base + ": zero point " + std::to_string(z + sub) +
                               " cannot be stored in this GPTQ format");
        word |= uint32_t(z) << (4 * j);
      }
      qzeros[size_t(g * (N / 8) + m)] = int32_t(word);
    }
  w.add_typed(base + ".qweight", DType::I32, {K / 8, N}, qweight);
  w.add_typed(base + ".qzeros", DType::I32, {G, N / 8}, qzeros);
  w.add_typed(base + ".scales", DType::F16, {G, N}, q.scales);
  w.add_typed(base + ".g_idx", DType::I32, {K}, q.g_idx);
  return Status::Ok();
}

}  // namespace qw::gptq

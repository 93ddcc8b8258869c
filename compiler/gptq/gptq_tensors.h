// One quantized linear layer in plain form, and its exact AutoGPTQ / GPTQModel tensors:
//   <base>.qweight  I32 [K/8, N]  nibble j (bits 4j..4j+3) of word (i, n) = code of input 8i+j
//   <base>.qzeros   I32 [G, N/8]  nibble j of word (g, m) = zero point of output 8m+j, stored
//                                 as zero - 1 in the v1 ("gptq") format, as is in gptq_v2
//   <base>.scales   F16 [G, N]
//   <base>.g_idx    I32 [K]       group of each input feature (k / group_size unless act-order)
// with W[n, k] = scales[g_idx[k], n] * (code[k, n] - zero[g_idx[k], n]).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/gptq/quant_config.h"
#include "compiler/gptq/safetensors_writer.h"
#include "compiler/safetensors_reader.h"

namespace qw::gptq {

struct QuantizedLinear {
  int64_t out_features = 0;  // N
  int64_t in_features = 0;   // K
  int64_t group_size = 0;    // effective: K when the checkpoint says -1
  std::vector<uint8_t> codes;    // [K][N], 0..15
  std::vector<uint16_t> scales;  // fp16 [G][N]
  std::vector<uint8_t> zeros;    // [G][N], the true zero point (v1 checkpoints: stored + 1)
  std::vector<int32_t> g_idx;    // [K]

  int64_t groups() const { return in_features / group_size; }
  uint8_t code(int64_t k, int64_t n) const { return codes[size_t(k * out_features + n)]; }
  // Exact fp32 value of W[n, k].
  float value(int64_t n, int64_t k) const;
  // Whether g_idx is the plain k / group_size (no act-order permutation).
  bool trivial_g_idx() const;
};

// Reads <base>.{qweight,qzeros,scales,g_idx} for a layer of `out_features` x `in_features`;
// shapes and dtypes are checked and messages name the tensor.
Expected<QuantizedLinear> read_gptq_linear(const Checkpoint& ckpt, const std::string& base,
                                           const GptqConfig& cfg, int64_t out_features,
                                           int64_t in_features);

// Appends the four tensors in `format`'s zero-point convention. v1 cannot represent a zero
// point of 0 (AutoGPTQ's own limitation); such layers must be written as gptq_v2.
Status write_gptq_linear(SafetensorsWriter& w, const std::string& base, const QuantizedLinear& q,
                         CheckpointFormat format);

}  // namespace qw::gptq

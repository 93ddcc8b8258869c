// Binds an INT4 weight of an opened artifact (its QuantParams and the scales / zeros / perm
// tensors they name) to an Int4Matrix of zero-copy views into the mapping.
#pragma once
#include <optional>
#include <string_view>

#include "artifact/artifact.h"
#include "quant/dequantize.h"
#include "quant/int4_kernel_constants.h"

namespace qw::quant {

// Whether tensor `name` of `tp_rank` carries QuantParams.
bool is_quantized(const Artifact& a, std::string_view name, int tp_rank);

// Validates method "gptq", bits 4, the packing name, shapes and dtypes of every companion
// tensor; messages name the tensor and the field.
Expected<Int4Matrix> int4_matrix(const Artifact& a, std::string_view name, int tp_rank);

}  // namespace qw::quant

namespace qw::quant {

// The INT4 kernel constants of an artifact (rank 0's QuantParams of every layer's QKV, o,
// gate/up and down weights, which must agree across layers); nullopt when the artifact has no
// quantized weights. Fails naming the tensor when a weight is missing or the group sizes
// differ between layers.
Expected<std::optional<Int4KernelConstants>> int4_kernel_constants(const Artifact& a);

}  // namespace qw::quant

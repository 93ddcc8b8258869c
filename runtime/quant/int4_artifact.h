// Binds an INT4 weight of an opened artifact (its QuantParams and the scales / zeros / perm
// tensors they name) to an Int4Matrix of zero-copy views into the mapping.
#pragma once
#include <string_view>

#include "artifact/artifact.h"
#include "quant/dequantize.h"

namespace qw::quant {

// Whether tensor `name` of `tp_rank` carries QuantParams.
bool is_quantized(const Artifact& a, std::string_view name, int tp_rank);

// Validates method "gptq", bits 4, the packing name, shapes and dtypes of every companion
// tensor; messages name the tensor and the field.
Expected<Int4Matrix> int4_matrix(const Artifact& a, std::string_view name, int tp_rank);

}  // namespace qw::quant

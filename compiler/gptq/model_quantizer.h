// Quantizes every linear layer of an FP16/BF16 Qwen2 checkpoint to 4-bit GPTQ, layer by
// layer, and writes the result as a gptq_v2 checkpoint (one safetensors file per layer plus
// an index) that the INT4 importer then packs exactly like a downloaded GPTQ checkpoint.
//
// GPTQ needs each linear's inputs: the calibration tokens go through an fp32 CPU forward of
// the model, one decoder layer at a time, sublayer by sublayer in AutoGPTQ's true-sequential
// order (q/k/v, o, gate/up, down), each sublayer seeing the already quantized ones before it,
// and the next layer receiving the quantized layer's output. Memory: one layer's weights in
// fp32, the Hessians and the calibration hidden states. RTN needs no activations.
//
// With held-out sequences (--quality-report, quality_report.h) those run through the same
// forward after the calibration ones, are left out of every Hessian GPTQ uses, and give each
// linear a held-out Hessian on which its GPTQ and RTN output errors are measured. On the CPU
// every step of the forward treats tokens (attention: sequences) independently and the
// Hessians sum the calibration tokens in the same order, so the quantized weights are
// bit-identical to those from the calibration sequences alone.
//
// With `damp_search` (damp_search.h) each input's calibration tokens are split into fit and
// validation tokens by position; the forward is unchanged, each linear picks RTN or GPTQ with
// d, 10d or 100d by its validation error and is then quantized on every calibration token.
// Without it (the default here; qwc compile turns it on unless --no-damp-search) the result is
// the plain GPTQ above, bit for bit.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/gptq/damp_search.h"
#include "compiler/gptq/quality_report.h"
#include "compiler/gptq/quant_config.h"
#include "compiler/gptq/quantizer.h"
#include "compiler/safetensors_reader.h"
#include "core/model_config.h"

namespace qw::gptq {

struct ModelQuantizeOptions {
  QuantizeSettings settings;
  bool rtn = false;
  std::vector<std::vector<int32_t>> calibration;  // token sequences (GPTQ only)
  // GPTQ with a quality report: sequences kept out of the Hessians, and where each linear's
  // held-out errors are appended (layer by layer, in quantization order). Both or neither.
  std::vector<std::vector<int32_t>> heldout;
  std::vector<LinearQuality>* quality = nullptr;
  // GPTQ: choose each linear's dampening on a validation split (damp_search.h). Falls back to
  // plain GPTQ, silently, when plan_damp_search finds too few validation tokens (qwc says so).
  bool damp_search = false;
  // With the search: each linear's choice is appended here (in quantization order), if set.
  std::vector<DampChoice>* damp_choices = nullptr;
  std::string out_dir;  // receives the gptq_v2 checkpoint
  const std::atomic<bool>* cancel = nullptr;
};

Expected<GptqConfig> quantize_model(const ModelConfig& config, const Checkpoint& ckpt,
                                    const ModelQuantizeOptions& opts);

// Shared with the GPU path (compiler/gptq/gpu): the same tensors in the same fp32 values.
// A checkpoint tensor as fp32, checked to hold `numel` elements (converted on `threads`).
Expected<std::vector<float>> load_tensor_f32(const Checkpoint& ckpt, const std::string& name,
                                             int64_t numel, unsigned threads = 1);
// The calibration sequences' token embeddings, concatenated: [total tokens][hidden_size].
Expected<std::vector<float>> embed_calibration(
    const ModelConfig& config, const Checkpoint& ckpt,
    const std::vector<std::vector<int32_t>>& calibration);
// The scratch checkpoint's file for decoder layer l, and the settings it is written with.
std::string gptq_layer_file(int64_t layer);
GptqConfig quantized_model_config(const ModelQuantizeOptions& opts);

// Checks that `heldout` and `quality` come together, and only with GPTQ.
Status check_quality_options(const ModelQuantizeOptions& opts);
// The short name of a linear in reports: "model.layers.3.mlp.up_proj" -> "up_proj".
std::string linear_short_name(const std::string& base);

// The calibration text cut into token sequences of at most `seq_len` tokens.
std::vector<std::vector<int32_t>> split_calibration(const std::vector<int32_t>& ids,
                                                    int64_t seq_len);

}  // namespace qw::gptq

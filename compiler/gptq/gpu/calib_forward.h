// GPTQ of a whole model on the GPU: quantize_model's contract and output (the same gptq_v2
// scratch checkpoint, written by the same write_gptq_linear), with the calibration forward,
// the Hessians and the solver on the device. The forward keeps the calibration activations
// [tokens][hidden] on the GPU in fp32 and runs quantize_model's true-sequential order
// (q/k/v, o, gate/up, down; each sublayer reading the already quantized ones before it):
// RMSNorm, RoPE, causal GQA attention per calibration sequence, SiLU*up and the residual
// adds as small kernels, the linears as cuBLAS SGEMM (fp32, no TF32). Device memory: the
// activations (at most 2 x (hidden + intermediate) fp32 per calibration token: 5.9 GB for 7B
// at 32,768 tokens), one layer's weights and one Hessian with its factor (about 9 GB for 7B's
// down_proj; with the damping search the fit and validation sums and the factor of one
// candidate at a time, about 13 GB, plus 2.9 GB for a quality report's held-out Hessian);
// every buffer is freed when its sublayer is done.
//
// With the damping search (ModelQuantizeOptions::damp_search, damp_search.h) the Hessian of
// each input is summed twice, over the fit rows and over the validation rows (gathered to
// fp64, DSYRK); each candidate dampening is factored once on the fit sum and shared by the
// linears of that input, each linear's candidates are measured on the validation sum
// (weight_error_forms_gpu), and the winners are factored and solved again on fit + validation.
// The host decisions use the CPU's functions, so both backends choose alike (up to the
// forward's rounding near a tie).
//
// With a quality report (ModelQuantizeOptions::quality) the held-out sequences follow the
// calibration ones through the same forward; GPTQ's Hessians sum only the calibration rows,
// and each input's held-out Hessian measures GPTQ's and RTN's errors (quality_gpu.h). The
// calibration rows' activations then come from the same kernels as without held-out rows,
// except that cuBLAS may choose another SGEMM algorithm for the longer batch, which can move
// their last bits: the weights equal those of a calibration-only GPU run up to the rounding
// ties this backend already has against the CPU (docs/int4_layout.md).
#pragma once
#include "compiler/gptq/model_quantizer.h"

namespace qw::gptq::gpu {

Expected<GptqConfig> quantize_model_gpu(const ModelConfig& config, const Checkpoint& ckpt,
                                        const ModelQuantizeOptions& opts);

}  // namespace qw::gptq::gpu

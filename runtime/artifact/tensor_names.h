// Canonical tensor names inside a .qwart (the compiler writes them, runtimes read them).
// Layouts (see schema/artifact.fbs):
//   model.embed_tokens.weight                      [vocab, hidden]               replicated on every rank
//   model.layers.N.input_layernorm.weight          [hidden]                      replicated
//   model.layers.N.self_attn.qkv_proj.weight       [(qh+2*kvh)*head_dim, hidden] FusedQKV, column-parallel
//   model.layers.N.self_attn.qkv_proj.bias         [(qh+2*kvh)*head_dim]         FusedQKV, column-parallel
//   model.layers.N.self_attn.o_proj.weight         [hidden, qh*head_dim]         row-parallel
//   model.layers.N.post_attention_layernorm.weight [hidden]                      replicated
//   model.layers.N.mlp.gate_up_proj.weight         [2*inter_r, hidden]           FusedGateUp, column-parallel
//   model.layers.N.mlp.down_proj.weight            [hidden, inter_r]             row-parallel
//   model.norm.weight                              [hidden]                      replicated
//   lm_head.weight                                 [vocab_r, hidden]             column-parallel by vocab;
//                                                  absent when tp == 1 and embeddings are tied.
// qh/kvh are this rank's heads (TpPlan); vocab_r = ceil(vocab/tp), the last rank's rows past
// the vocabulary are zero.
#pragma once
#include <string>

namespace qw::names {

inline std::string layer(int64_t i, const char* suffix) {
  return "model.layers." + std::to_string(i) + "." + suffix;
}
inline constexpr const char* kEmbed = "model.embed_tokens.weight";
inline constexpr const char* kFinalNorm = "model.norm.weight";
inline constexpr const char* kLmHead = "lm_head.weight";
inline constexpr const char* kInputNorm = "input_layernorm.weight";
inline constexpr const char* kQkvWeight = "self_attn.qkv_proj.weight";
inline constexpr const char* kQkvBias = "self_attn.qkv_proj.bias";
inline constexpr const char* kOProj = "self_attn.o_proj.weight";
inline constexpr const char* kPostNorm = "post_attention_layernorm.weight";
inline constexpr const char* kGateUp = "mlp.gate_up_proj.weight";
inline constexpr const char* kDown = "mlp.down_proj.weight";

}  // namespace qw::names

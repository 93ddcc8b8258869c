#include "compiler/gptq/int4_plan.h"

#include <algorithm>

#include "artifact/tensor_names.h"

namespace qw::gptq {

namespace {

Status expect_shape(const Checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape) {
  QW_ASSIGN_OR_RETURN(const SafetensorInfo* t, ck.find(name));
  if (t->shape != shape) {
    std::string want, got;
    for (auto d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
    for (auto d : t->shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
    return Status::Error("tensor " + name + " has shape [" + got + "], config implies [" + want + "]");
  }
  return Status::Ok();
}

// The packed GPTQ weight of a [n, k] layer is qweight [k/8, n].
Status expect_quant(const Checkpoint& ck, const std::string& base, int64_t n, int64_t k) {
  if (!ck.has(base + ".qweight")) {
    if (ck.has(base + ".weight"))
      return Status::Error("tensor " + base + ".weight is not quantized while the checkpoint's "
                           "quantization_config says GPTQ (mixed checkpoints are not supported)");
    return Status::Error("checkpoint lacks tensor " + base + ".qweight");
  }
  return expect_shape(ck, base + ".qweight", {k / 8, n});
}

OutputTensorPlan replicated(const std::string& name, std::vector<int64_t> shape) {
  OutputTensorPlan o{name, shape, fb::Layout::Plain, fb::TpSplit::Replicated, {}, 0};
  o.pieces.push_back({name, 0, shape[0], 0, shape.size() > 1 ? shape[1] : 1});
  return o;
}

Int4Entry plain(OutputTensorPlan p) {
  Int4Entry e;
  e.plain = std::move(p);
  return e;
}
Int4Entry quant(QuantTensorPlan p) {
  Int4Entry e;
  e.quantized = true;
  e.quant = std::move(p);
  return e;
}

}  // namespace

Expected<std::vector<std::vector<Int4Entry>>> plan_int4_partition(const ModelConfig& c,
                                                                 const TpPlan& p,
                                                                 const Checkpoint& fp,
                                                                 const Checkpoint& q) {
  const int64_t H = c.hidden_size, hd = c.head_dim, I = c.intermediate_size;
  const int64_t nq = c.num_attention_heads, nkv = c.num_key_value_heads, V = c.vocab_size;
  QW_RETURN_IF_ERROR(expect_shape(fp, names::kEmbed, {V, H}));
  QW_RETURN_IF_ERROR(expect_shape(fp, names::kFinalNorm, {H}));
  const bool tied = c.tie_word_embeddings || !fp.has(names::kLmHead);
  if (!c.tie_word_embeddings && tied)
    return Status::Error("checkpoint lacks lm_head.weight and tie_word_embeddings is false");
  if (!tied) QW_RETURN_IF_ERROR(expect_shape(fp, names::kLmHead, {V, H}));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    auto L = [&](const char* s) { return names::layer(l, s); };
    QW_RETURN_IF_ERROR(expect_quant(q, L("self_attn.q_proj"), nq * hd, H));
    QW_RETURN_IF_ERROR(expect_quant(q, L("self_attn.k_proj"), nkv * hd, H));
    QW_RETURN_IF_ERROR(expect_quant(q, L("self_attn.v_proj"), nkv * hd, H));
    QW_RETURN_IF_ERROR(expect_quant(q, L("self_attn.o_proj"), H, nq * hd));
    QW_RETURN_IF_ERROR(expect_quant(q, L("mlp.gate_proj"), I, H));
    QW_RETURN_IF_ERROR(expect_quant(q, L("mlp.up_proj"), I, H));
    QW_RETURN_IF_ERROR(expect_quant(q, L("mlp.down_proj"), H, I));
    QW_RETURN_IF_ERROR(expect_shape(fp, L("self_attn.q_proj.bias"), {nq * hd}));
    QW_RETURN_IF_ERROR(expect_shape(fp, L("self_attn.k_proj.bias"), {nkv * hd}));
    QW_RETURN_IF_ERROR(expect_shape(fp, L("self_attn.v_proj.bias"), {nkv * hd}));
    QW_RETURN_IF_ERROR(expect_shape(fp, L(names::kInputNorm), {H}));
    QW_RETURN_IF_ERROR(expect_shape(fp, L(names::kPostNorm), {H}));
  }

  std::vector<std::vector<Int4Entry>> ranks(size_t(p.tp));
  for (int64_t r = 0; r < p.tp; ++r) {
    auto& out = ranks[size_t(r)];
    out.push_back(plain(replicated(names::kEmbed, {V, H})));
    const int64_t q0 = p.q_head_begin(r) * hd, qn = p.q_heads_per_rank * hd;
    const int64_t kv0 = p.kv_head_begin(r) * hd, kvn = p.kv_heads_per_rank * hd;
    const int64_t i0 = r * p.intermediate_per_rank, in = p.intermediate_per_rank;
    const auto col = p.tp == 1 ? fb::TpSplit::Replicated : fb::TpSplit::ColumnParallel;
    const auto row = p.tp == 1 ? fb::TpSplit::Replicated : fb::TpSplit::RowParallel;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      auto L = [&](const char* s) { return names::layer(l, s); };
      out.push_back(plain(replicated(L(names::kInputNorm), {H})));
      QuantTensorPlan qkv{L(names::kQkvWeight), fb::Layout::FusedQKV, col, {}, H, 0, H};
      qkv.pieces = {{L("self_attn.q_proj"), q0, qn, nq * hd},
                    {L("self_attn.k_proj"), kv0, kvn, nkv * hd},
                    {L("self_attn.v_proj"), kv0, kvn, nkv * hd}};
      out.push_back(quant(qkv));
      OutputTensorPlan bias{L(names::kQkvBias), {qn + 2 * kvn}, fb::Layout::FusedQKV, col, {}, 0};
      bias.pieces = {{L("self_attn.q_proj.bias"), q0, qn, 0, 1},
                     {L("self_attn.k_proj.bias"), kv0, kvn, 0, 1},
                     {L("self_attn.v_proj.bias"), kv0, kvn, 0, 1}};
      out.push_back(plain(bias));
      QuantTensorPlan o{L(names::kOProj), fb::Layout::Plain, row, {}, nq * hd, q0, qn};
      o.pieces = {{L("self_attn.o_proj"), 0, H, H}};
      out.push_back(quant(o));
      out.push_back(plain(replicated(L(names::kPostNorm), {H})));
      QuantTensorPlan gu{L(names::kGateUp), fb::Layout::FusedGateUp, col, {}, H, 0, H};
      gu.pieces = {{L("mlp.gate_proj"), i0, in, I}, {L("mlp.up_proj"), i0, in, I}};
      out.push_back(quant(gu));
      QuantTensorPlan down{L(names::kDown), fb::Layout::Plain, row, {}, I, i0, in};
      down.pieces = {{L("mlp.down_proj"), 0, H, H}};
      out.push_back(quant(down));
    }
    out.push_back(plain(replicated(names::kFinalNorm, {H})));
    if (!(tied && p.tp == 1)) {
      const int64_t v0 = r * p.vocab_per_rank;
      const int64_t vn = std::max<int64_t>(0, std::min(p.vocab_per_rank, V - v0));
      OutputTensorPlan lm{names::kLmHead, {p.vocab_per_rank, H}, fb::Layout::Plain,
                          p.tp == 1 ? fb::TpSplit::Replicated : fb::TpSplit::ColumnParallel,
                          {}, p.vocab_per_rank - vn};
      if (vn > 0) lm.pieces = {{tied ? names::kEmbed : names::kLmHead, v0, vn, 0, H}};
      out.push_back(plain(lm));
    }
  }
  return ranks;
}

}  // namespace qw::gptq

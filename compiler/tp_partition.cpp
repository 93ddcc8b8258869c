#include "compiler/tp_partition.h"

#include <algorithm>

#include "artifact/tensor_names.h"

namespace qw {

namespace {

class Planner {
 public:
  Planner(const ModelConfig& c, const TpPlan& p, const Checkpoint& k) : c_(c), p_(p), k_(k) {}

  Status expect(const std::string& name, std::vector<int64_t> shape) const {
    QW_ASSIGN_OR_RETURN(const SafetensorInfo* t, k_.find(name));
    if (t->shape != shape) {
      std::string want, got;
      for (auto d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
      for (auto d : t->shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
      return Status::Error("tensor " + name + " has shape [" + got + "], config implies [" +
                           want + "]");
    }
    return Status::Ok();
  }

  // Whole tensor, same on every rank.
  OutputTensorPlan replicated(const std::string& out, const std::string& src,
                              std::vector<int64_t> shape) const {
    OutputTensorPlan o{out, shape, fb::Layout::Plain, fb::TpSplit::Replicated, {}, 0};
    o.pieces.push_back({src, 0, shape[0], 0, shape.size() > 1 ? shape[1] : 1});
    return o;
  }

  Expected<std::vector<std::vector<OutputTensorPlan>>> run() const {
    const int64_t H = c_.hidden_size, hd = c_.head_dim, I = c_.intermediate_size;
    const int64_t nq = c_.num_attention_heads, nkv = c_.num_key_value_heads, V = c_.vocab_size;
    QW_RETURN_IF_ERROR(expect(names::kEmbed, {V, H}));
    QW_RETURN_IF_ERROR(expect(names::kFinalNorm, {H}));
    const bool tied = c_.tie_word_embeddings || !k_.has(names::kLmHead);
    if (!tied) QW_RETURN_IF_ERROR(expect(names::kLmHead, {V, H}));
    if (!c_.tie_word_embeddings && tied)
      return Status::Error("checkpoint lacks lm_head.weight and tie_word_embeddings is false");
    for (int64_t l = 0; l < c_.num_hidden_layers; ++l) {
      auto L = [&](const char* s) { return names::layer(l, s); };
      QW_RETURN_IF_ERROR(expect(L("self_attn.q_proj.weight"), {nq * hd, H}));
      QW_RETURN_IF_ERROR(expect(L("self_attn.k_proj.weight"), {nkv * hd, H}));
      QW_RETURN_IF_ERROR(expect(L("self_attn.v_proj.weight"), {nkv * hd, H}));
      QW_RETURN_IF_ERROR(expect(L("self_attn.q_proj.bias"), {nq * hd}));
      QW_RETURN_IF_ERROR(expect(L("self_attn.k_proj.bias"), {nkv * hd}));
      QW_RETURN_IF_ERROR(expect(L("self_attn.v_proj.bias"), {nkv * hd}));
      QW_RETURN_IF_ERROR(expect(L("self_attn.o_proj.weight"), {H, nq * hd}));
      QW_RETURN_IF_ERROR(expect(L("mlp.gate_proj.weight"), {I, H}));
      QW_RETURN_IF_ERROR(expect(L("mlp.up_proj.weight"), {I, H}));
      QW_RETURN_IF_ERROR(expect(L("mlp.down_proj.weight"), {H, I}));
      QW_RETURN_IF_ERROR(expect(L(names::kInputNorm), {H}));
      QW_RETURN_IF_ERROR(expect(L(names::kPostNorm), {H}));
    }

    std::vector<std::vector<OutputTensorPlan>> ranks(size_t(p_.tp));
    for (int64_t r = 0; r < p_.tp; ++r) {
      auto& out = ranks[size_t(r)];
      out.push_back(replicated(names::kEmbed, names::kEmbed, {V, H}));
      const int64_t q0 = p_.q_head_begin(r) * hd, qn = p_.q_heads_per_rank * hd;
      const int64_t kv0 = p_.kv_head_begin(r) * hd, kvn = p_.kv_heads_per_rank * hd;
      const int64_t i0 = r * p_.intermediate_per_rank, in = p_.intermediate_per_rank;
      // With one rank nothing is split; the tag tells readers not to reassemble.
      const auto col = p_.tp == 1 ? fb::TpSplit::Replicated : fb::TpSplit::ColumnParallel;
      const auto row = p_.tp == 1 ? fb::TpSplit::Replicated : fb::TpSplit::RowParallel;
      for (int64_t l = 0; l < c_.num_hidden_layers; ++l) {
        auto L = [&](const char* s) { return names::layer(l, s); };
        out.push_back(replicated(L(names::kInputNorm), L(names::kInputNorm), {H}));
        OutputTensorPlan qkv{L(names::kQkvWeight), {qn + 2 * kvn, H}, fb::Layout::FusedQKV, col, {}, 0};
        qkv.pieces = {{L("self_attn.q_proj.weight"), q0, qn, 0, H},
                      {L("self_attn.k_proj.weight"), kv0, kvn, 0, H},
                      {L("self_attn.v_proj.weight"), kv0, kvn, 0, H}};
        out.push_back(qkv);
        OutputTensorPlan bias{L(names::kQkvBias), {qn + 2 * kvn}, fb::Layout::FusedQKV, col, {}, 0};
        bias.pieces = {{L("self_attn.q_proj.bias"), q0, qn, 0, 1},
                       {L("self_attn.k_proj.bias"), kv0, kvn, 0, 1},
                       {L("self_attn.v_proj.bias"), kv0, kvn, 0, 1}};
        out.push_back(bias);
        OutputTensorPlan o{L(names::kOProj), {H, qn}, fb::Layout::Plain, row, {}, 0};
        o.pieces = {{L("self_attn.o_proj.weight"), 0, H, q0, qn}};
        out.push_back(o);
        out.push_back(replicated(L(names::kPostNorm), L(names::kPostNorm), {H}));
        OutputTensorPlan gu{L(names::kGateUp), {2 * in, H}, fb::Layout::FusedGateUp, col, {}, 0};
        gu.pieces = {{L("mlp.gate_proj.weight"), i0, in, 0, H},
                     {L("mlp.up_proj.weight"), i0, in, 0, H}};
        out.push_back(gu);
        OutputTensorPlan down{L(names::kDown), {H, in}, fb::Layout::Plain, row, {}, 0};
        down.pieces = {{L("mlp.down_proj.weight"), 0, H, i0, in}};
        out.push_back(down);
      }
      out.push_back(replicated(names::kFinalNorm, names::kFinalNorm, {H}));
      if (!(tied && p_.tp == 1)) {
        // Vocab-split lm_head; with tied embeddings the rows come from the embedding.
        const int64_t v0 = r * p_.vocab_per_rank;
        const int64_t vn = std::max<int64_t>(0, std::min(p_.vocab_per_rank, V - v0));
        OutputTensorPlan lm{names::kLmHead, {p_.vocab_per_rank, H}, fb::Layout::Plain,
                            p_.tp == 1 ? fb::TpSplit::Replicated : fb::TpSplit::ColumnParallel,
                            {}, p_.vocab_per_rank - vn};
        if (vn > 0) lm.pieces = {{tied ? names::kEmbed : names::kLmHead, v0, vn, 0, H}};
        out.push_back(lm);
      }
    }
    return ranks;
  }

 private:
  const ModelConfig& c_;
  const TpPlan& p_;
  const Checkpoint& k_;
};

}  // namespace

Expected<std::vector<std::vector<OutputTensorPlan>>> plan_partition(const ModelConfig& config,
                                                                    const TpPlan& plan,
                                                                    const Checkpoint& ckpt) {
  return Planner(config, plan, ckpt).run();
}

}  // namespace qw

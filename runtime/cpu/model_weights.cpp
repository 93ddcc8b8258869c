#include "cpu/model_weights.h"

#include <string>

#include "artifact/artifact.h"
#include "artifact/tensor_names.h"
#include "quant/int4_artifact.h"

namespace qw::cpu {

namespace {

Status check_matrix(const WeightMatrix& m, int64_t rows, int64_t cols) {
  if (m.empty()) return Status::Error("tensor " + m.name + " is missing");
  if (!m.int4 && !is_float_weight_dtype(m.dtype))
    return Status::Error("tensor " + m.name + " has dtype " + std::string(dtype_name(m.dtype)) +
                         ", which the CPU runtime does not read (f32, f16, bf16)");
  if (m.rows != rows || m.cols != cols)
    return Errorf("tensor %s has shape [%lld, %lld], expected [%lld, %lld]", m.name.c_str(),
                  (long long)m.rows, (long long)m.cols, (long long)rows, (long long)cols);
  return Status::Ok();
}

Status check_vector(const std::vector<float>& v, int64_t n, const std::string& name) {
  if (int64_t(v.size()) != n)
    return Errorf("tensor %s has %lld elements, expected %lld", name.c_str(), (long long)v.size(),
                  (long long)n);
  return Status::Ok();
}

// Replicated tensors are read from rank 0 (callers pass 0 for them).
Expected<TensorView> find(const Artifact& art, const std::string& name, int rank) {
  auto t = art.tensor(name, rank);
  if (!t.ok()) return t.status().context("tensor " + name + " (rank " + std::to_string(rank) + ")");
  return t;
}

Expected<WeightMatrix> matrix(const Artifact& art, const std::string& name, int rank) {
  QW_ASSIGN_OR_RETURN(TensorView t, find(art, name, rank));
  if (t.shape.size() != 2)
    return Errorf("tensor %s (rank %d) has rank-%zu shape, expected a matrix", name.c_str(), rank,
                  t.shape.size());
  WeightMatrix m;
  m.name = name + (rank ? " (rank " + std::to_string(rank) + ")" : std::string());
  if (art.metadata().tensors() != nullptr && t.dtype == DType::I32) {
    // Packed INT4: the shape is the packed one; the logical one comes from the quant params.
    QW_ASSIGN_OR_RETURN(quant::Int4Matrix q, quant::int4_matrix(art, name, rank));
    m.dtype = DType::I32;
    m.data = t.data;
    m.rows = q.rows;
    m.cols = q.cols;
    m.int4 = std::make_shared<const quant::Int4Matrix>(std::move(q));
    return m;
  }
  m.dtype = t.dtype;
  m.data = t.data;
  m.rows = t.shape[0];
  m.cols = t.shape[1];
  if (!is_float_weight_dtype(m.dtype))
    return Status::Error("tensor " + m.name + " has dtype " + std::string(dtype_name(m.dtype)) +
                         ", which the CPU runtime does not read (f32, f16, bf16)");
  if (t.size != uint64_t(m.rows * m.cols) * dtype_size(m.dtype))
    return Errorf("tensor %s: %llu bytes for shape [%lld, %lld]", m.name.c_str(),
                  (unsigned long long)t.size, (long long)m.rows, (long long)m.cols);
  return m;
}

Expected<std::vector<float>> vector(const Artifact& art, const std::string& name, int rank) {
  QW_ASSIGN_OR_RETURN(TensorView t, find(art, name, rank));
  if (t.shape.size() != 1)
    return Errorf("tensor %s has rank-%zu shape, expected a vector", name.c_str(), t.shape.size());
  WeightMatrix m{name, t.dtype, t.data, 1, t.shape[0]};
  if (!is_float_weight_dtype(m.dtype))
    return Status::Error("tensor " + name + " has dtype " + std::string(dtype_name(m.dtype)) +
                         ", which the CPU runtime does not read (f32, f16, bf16)");
  if (t.size != uint64_t(m.cols) * dtype_size(m.dtype))
    return Errorf("tensor %s: %llu bytes for %lld elements", name.c_str(),
                  (unsigned long long)t.size, (long long)m.cols);
  std::vector<float> v(size_t(m.cols));
  for (int64_t i = 0; i < m.cols; ++i) v[size_t(i)] = m.at(0, i);
  return v;
}

}  // namespace

Status validate_weights(const ModelConfig& cfg, const TpPlan& plan, const ModelWeights& w) {
  const int64_t H = cfg.hidden_size, hd = cfg.head_dim;
  if (plan.tp < 1) return Errorf("tp plan: tp = %lld", (long long)plan.tp);
  if (plan.q_heads_per_rank <= 0 || plan.kv_heads_per_rank <= 0 ||
      plan.q_heads_per_rank % plan.kv_heads_per_rank != 0)
    return Errorf("tp plan: %lld q heads and %lld kv heads per rank do not form GQA groups",
                  (long long)plan.q_heads_per_rank, (long long)plan.kv_heads_per_rank);
  if (plan.q_heads_per_rank * plan.tp != cfg.num_attention_heads)
    return Errorf("tp plan: %lld q heads per rank x tp %lld != num_attention_heads %lld",
                  (long long)plan.q_heads_per_rank, (long long)plan.tp,
                  (long long)cfg.num_attention_heads);
  QW_RETURN_IF_ERROR(check_matrix(w.embed, cfg.vocab_size, H));
  QW_RETURN_IF_ERROR(check_vector(w.final_norm, H, names::kFinalNorm));
  if (int64_t(w.lm_head.size()) != plan.tp)
    return Errorf("lm_head: %zu rank views for tp %lld", w.lm_head.size(), (long long)plan.tp);
  const int64_t vocab_r = plan.tp == 1 ? cfg.vocab_size : plan.vocab_per_rank;
  if (vocab_r * plan.tp < cfg.vocab_size)
    return Errorf("tp plan: %lld vocab rows per rank do not cover vocab_size %lld",
                  (long long)vocab_r, (long long)cfg.vocab_size);
  for (const auto& m : w.lm_head) QW_RETURN_IF_ERROR(check_matrix(m, vocab_r, H));
  if (int64_t(w.layers.size()) != cfg.num_hidden_layers)
    return Errorf("%zu layers of weights for num_hidden_layers %lld", w.layers.size(),
                  (long long)cfg.num_hidden_layers);
  const int64_t qkv_rows = (plan.q_heads_per_rank + 2 * plan.kv_heads_per_rank) * hd;
  const int64_t I_r = plan.intermediate_per_rank;
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    QW_RETURN_IF_ERROR(check_vector(L.input_norm, H, names::layer(int64_t(l), names::kInputNorm)));
    QW_RETURN_IF_ERROR(check_vector(L.post_norm, H, names::layer(int64_t(l), names::kPostNorm)));
    if (int64_t(L.ranks.size()) != plan.tp)
      return Errorf("layer %zu: %zu rank views for tp %lld", l, L.ranks.size(), (long long)plan.tp);
    for (const RankLayerWeights& R : L.ranks) {
      QW_RETURN_IF_ERROR(check_matrix(R.qkv, qkv_rows, H));
      QW_RETURN_IF_ERROR(check_vector(R.qkv_bias, qkv_rows, R.qkv.name + " bias"));
      QW_RETURN_IF_ERROR(check_matrix(R.o_proj, H, plan.q_heads_per_rank * hd));
      QW_RETURN_IF_ERROR(check_matrix(R.gate_up, 2 * I_r, H));
      QW_RETURN_IF_ERROR(check_matrix(R.down, H, I_r));
    }
  }
  return Status::Ok();
}

Expected<ModelWeights> weights_from_artifact(const Artifact& art) {
  const ModelConfig& cfg = art.config();
  const int tp = art.tp_size();
  ModelWeights w;
  QW_ASSIGN_OR_RETURN(w.embed, matrix(art, names::kEmbed, 0));
  QW_ASSIGN_OR_RETURN(w.final_norm, vector(art, names::kFinalNorm, 0));
  for (int r = 0; r < tp; ++r) {
    if (tp == 1 && cfg.tie_word_embeddings && !art.has_tensor(names::kLmHead, 0)) {
      w.lm_head.push_back(w.embed);  // tied: the lm_head is the embedding itself
    } else {
      QW_ASSIGN_OR_RETURN(WeightMatrix m, matrix(art, names::kLmHead, r));
      w.lm_head.push_back(std::move(m));
    }
  }
  w.layers.resize(size_t(cfg.num_hidden_layers));
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    LayerWeights& L = w.layers[size_t(l)];
    QW_ASSIGN_OR_RETURN(L.input_norm, vector(art, names::layer(l, names::kInputNorm), 0));
    QW_ASSIGN_OR_RETURN(L.post_norm, vector(art, names::layer(l, names::kPostNorm), 0));
    L.ranks.resize(size_t(tp));
    for (int r = 0; r < tp; ++r) {
      RankLayerWeights& R = L.ranks[size_t(r)];
      QW_ASSIGN_OR_RETURN(R.qkv, matrix(art, names::layer(l, names::kQkvWeight), r));
      QW_ASSIGN_OR_RETURN(R.qkv_bias, vector(art, names::layer(l, names::kQkvBias), r));
      QW_ASSIGN_OR_RETURN(R.o_proj, matrix(art, names::layer(l, names::kOProj), r));
      QW_ASSIGN_OR_RETURN(R.gate_up, matrix(art, names::layer(l, names::kGateUp), r));
      QW_ASSIGN_OR_RETURN(R.down, matrix(art, names::layer(l, names::kDown), r));
    }
  }
  QW_RETURN_IF_ERROR(validate_weights(cfg, art.tp_plan(), w));
  return w;
}

}  // namespace qw::cpu

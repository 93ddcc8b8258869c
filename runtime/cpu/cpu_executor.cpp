#include "cpu/cpu_executor.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "artifact/artifact.h"
#include "cpu/attention.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"

namespace qw::cpu {

Expected<std::unique_ptr<CpuExecutor>> CpuExecutor::create(const Artifact& art,
                                                           CpuExecutorOptions opts) {
  QW_ASSIGN_OR_RETURN(ModelWeights w, weights_from_artifact(art));
  auto ex = create(art.config(), art.tp_plan(), std::move(w), opts);
  if (!ex.ok()) return ex.status().context(art.path());
  return ex;
}

Expected<std::unique_ptr<CpuExecutor>> CpuExecutor::create(const ModelConfig& cfg,
                                                           const TpPlan& plan, ModelWeights weights,
                                                           CpuExecutorOptions opts) {
  if (cfg.hidden_act != "silu")
    return Status::Error("config.hidden_act '" + cfg.hidden_act +
                         "' is not supported by the CPU runtime (silu)");
  if (cfg.max_position_embeddings <= 0)
    return Errorf("config.max_position_embeddings = %lld", (long long)cfg.max_position_embeddings);
  if (opts.kv_block_tokens <= 0)
    return Errorf("kv_block_tokens = %lld: must be positive", (long long)opts.kv_block_tokens);
  QW_RETURN_IF_ERROR(validate_weights(cfg, plan, weights));
  QW_ASSIGN_OR_RETURN(RopeParams rope, compute_rope_params(cfg));
  return std::unique_ptr<CpuExecutor>(
      new CpuExecutor(cfg, plan, std::move(weights), std::move(rope), opts));
}

CpuExecutor::CpuExecutor(const ModelConfig& cfg, const TpPlan& plan, ModelWeights weights,
                         RopeParams rope, CpuExecutorOptions opts)
    : cfg_(cfg),
      plan_(plan),
      w_(std::move(weights)),
      rope_(std::move(rope)),
      pool_(opts.threads),
      cache_(
          KvGeometry{plan.tp, cfg.num_hidden_layers, plan.kv_heads_per_rank, cfg.head_dim,
                     opts.kv_block_tokens},
          ((opts.kv_capacity_tokens > 0 ? opts.kv_capacity_tokens : cfg.max_position_embeddings) +
           opts.kv_block_tokens - 1) /
              opts.kv_block_tokens,
          opts.prefix_caching) {
  reduce_rows_on_host_ = opts.reduce_rows_on_host;
  max_context_ =
      std::min(cfg.max_position_embeddings, cache_.blocks_total() * cache_.geometry().block_tokens);
}

std::string CpuExecutor::device_name() const {
  return "cpu (" + std::to_string(pool_.size()) + " threads, tp " + std::to_string(plan_.tp) + ")";
}

bool CpuExecutor::can_append(SeqId seq, int64_t n) const {
  const KvBlockManager& b = cache_.blocks();
  const int64_t len = b.length(seq) + n;
  return len <= max_context_ && b.blocks_needed(seq, len) <= b.blocks_available();
}

KvUsage CpuExecutor::kv_usage() const {
  return cache_.blocks().usage();
}

int64_t CpuExecutor::attach_prefix(SeqId seq, std::span<const int32_t> tokens) {
  return cache_.blocks().attach_prefix(seq, tokens);
}

Status CpuExecutor::check_inputs(std::span<const StepInput> inputs) const {
  std::unordered_set<SeqId> seen;
  int64_t blocks = 0;
  for (const StepInput& in : inputs) {
    const unsigned long long id = in.seq;
    if (!seen.insert(in.seq).second) return Errorf("sequence %llu appears twice in one step", id);
    if (in.tokens.empty()) return Errorf("sequence %llu: empty token chunk", id);
    const int64_t cached = cache_.blocks().length(in.seq);
    if (in.start_pos != cached)
      return Errorf("sequence %llu: start_pos %lld but %lld tokens are cached", id,
                    (long long)in.start_pos, (long long)cached);
    const int64_t end = in.start_pos + int64_t(in.tokens.size());
    if (end > max_context_)
      return Errorf(
          "sequence %llu: %lld tokens exceed the context of %lld "
          "(max_position_embeddings %lld)",
          id, (long long)end, (long long)max_context_, (long long)cfg_.max_position_embeddings);
    for (int32_t t : in.tokens)
      if (t < 0 || t >= cfg_.vocab_size)
        return Errorf("sequence %llu: token id %d outside the vocabulary of %lld", id, t,
                      (long long)cfg_.vocab_size);
    blocks += cache_.blocks().blocks_needed(in.seq, end);
  }
  if (blocks > cache_.blocks().blocks_available())
    return Errorf("KV cache full: the step needs %lld blocks, %lld free", (long long)blocks,
                  (long long)cache_.blocks().blocks_available());
  return Status::Ok();
}

Status CpuExecutor::step(std::span<const StepInput> inputs, std::vector<float>& logits) {
  QW_RETURN_IF_ERROR(check_inputs(inputs));
  logits.clear();
  if (inputs.empty()) return Status::Ok();
  for (const StepInput& in : inputs)
    QW_RETURN_IF_ERROR(cache_.reserve(in.seq, in.start_pos + int64_t(in.tokens.size())));

  const int64_t H = cfg_.hidden_size, hd = cfg_.head_dim, half = hd / 2;
  const int64_t qh = plan_.q_heads_per_rank, kvh = plan_.kv_heads_per_rank;
  const int64_t q_dim = qh * hd, kv_dim = kvh * hd, qkv_dim = q_dim + 2 * kv_dim;
  const int64_t I = plan_.intermediate_per_rank;

  // Flatten every input's chunk into rows; remember which rows need logits.
  std::vector<int32_t> tokens;
  std::vector<AttentionRow> rows;
  std::vector<int64_t> logit_rows;
  for (const StepInput& in : inputs) {
    const std::vector<int32_t>& table = cache_.blocks().table(in.seq);
    for (size_t t = 0; t < in.tokens.size(); ++t) {
      const int64_t row = int64_t(rows.size());
      tokens.push_back(in.tokens[t]);
      rows.push_back(AttentionRow{&table, in.start_pos + int64_t(t)});
      if (in.all_logits || (in.want_logits && t + 1 == in.tokens.size())) logit_rows.push_back(row);
    }
  }
  const int64_t M = int64_t(rows.size());

  std::vector<float> h(size_t(M * H)), xn(size_t(M * H)), acc(size_t(M * H)), part(size_t(M * H));
  std::vector<float> qkv(size_t(M * qkv_dim)), attn(size_t(M * q_dim));
  std::vector<float> gu(size_t(M * 2 * I)), act(size_t(M * I));
  std::vector<float> cos(size_t(M * half)), sin(size_t(M * half));
  for (int64_t i = 0; i < M; ++i) {
    convert_row(w_.embed, tokens[size_t(i)], 0, H, h.data() + i * H);
    rope_cos_sin(rope_, rows[size_t(i)].pos, cos.data() + i * half, sin.data() + i * half);
  }

  // Sum of per-rank partial products, in rank order (what the TP all-reduce computes).
  auto reduce = [&](int64_t rank) {
    if (rank > 0) add_inplace(acc.data(), part.data(), M * H);
  };

  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    const LayerWeights& L = w_.layers[size_t(l)];
    const bool sliding =
        cfg_.use_sliding_window && cfg_.sliding_window > 0 && l >= cfg_.max_window_layers;
    for (int64_t i = 0; i < M; ++i)
      rms_norm(h.data() + i * H, L.input_norm.data(), H, cfg_.rms_norm_eps, xn.data() + i * H);
    for (int64_t r = 0; r < plan_.tp; ++r) {
      const RankLayerWeights& R = L.ranks[size_t(r)];
      matmul(pool_, xn.data(), M, H, R.qkv, 0, qkv_dim, R.qkv_bias.data(), qkv.data(), qkv_dim);
      for (int64_t i = 0; i < M; ++i) {
        float* row = qkv.data() + i * qkv_dim;
        const float* c = cos.data() + i * half;
        const float* s = sin.data() + i * half;
        apply_rope(row, qh, hd, c, s);
        apply_rope(row + q_dim, kvh, hd, c, s);
        for (int64_t g = 0; g < kvh; ++g) {
          const std::vector<int32_t>& table = *rows[size_t(i)].table;
          const int64_t pos = rows[size_t(i)].pos;
          std::memcpy(cache_.slot(table, r, l, 0, g, pos), row + q_dim + g * hd, size_t(hd) * 4);
          std::memcpy(cache_.slot(table, r, l, 1, g, pos), row + q_dim + kv_dim + g * hd,
                      size_t(hd) * 4);
        }
      }
      const AttentionShape shape{r, l, qh, kvh, hd, sliding ? cfg_.sliding_window : 0};
      attention(pool_, cache_, rows, shape, qkv.data(), qkv_dim, attn.data(), q_dim);
      matmul(pool_, attn.data(), M, q_dim, R.o_proj, 0, H, nullptr,
             r == 0 ? acc.data() : part.data(), H);
      reduce(r);
    }
    add_inplace(h.data(), acc.data(), M * H);

    for (int64_t i = 0; i < M; ++i)
      rms_norm(h.data() + i * H, L.post_norm.data(), H, cfg_.rms_norm_eps, xn.data() + i * H);
    for (int64_t r = 0; r < plan_.tp; ++r) {
      const RankLayerWeights& R = L.ranks[size_t(r)];
      matmul(pool_, xn.data(), M, H, R.gate_up, 0, 2 * I, nullptr, gu.data(), 2 * I);
      for (int64_t i = 0; i < M; ++i)
        silu_mul(gu.data() + i * 2 * I, gu.data() + i * 2 * I + I, I, act.data() + i * I);
      matmul(pool_, act.data(), M, I, R.down, 0, H, nullptr, r == 0 ? acc.data() : part.data(), H);
      reduce(r);
    }
    add_inplace(h.data(), acc.data(), M * H);
  }

  for (const StepInput& in : inputs) cache_.blocks().commit(in.seq, in.tokens);

  // Final norm and lm_head for the requested rows only; each rank owns a vocab slice.
  const int64_t V = cfg_.vocab_size, nl = int64_t(logit_rows.size());
  std::vector<float> xf(size_t(nl * H));
  for (int64_t j = 0; j < nl; ++j)
    rms_norm(h.data() + logit_rows[size_t(j)] * H, w_.final_norm.data(), H, cfg_.rms_norm_eps,
             xf.data() + j * H);
  logits.assign(size_t(nl * V), 0.0f);
  const int64_t vocab_r = plan_.tp == 1 ? V : plan_.vocab_per_rank;
  for (int64_t r = 0; r < plan_.tp; ++r) {
    const int64_t begin = r * vocab_r;
    const int64_t count = std::min(V, begin + vocab_r) - begin;
    if (count <= 0) continue;
    matmul(pool_, xf.data(), nl, H, w_.lm_head[size_t(r)], 0, count, nullptr, logits.data() + begin,
           V);
  }
  return Status::Ok();
}

}  // namespace qw::cpu

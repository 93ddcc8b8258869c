#include "engine/throughput_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

namespace qw {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

Expected<nlohmann::ordered_json> run_throughput_bench(ModelExecutor& model,
                                                      const ThroughputBenchOptions& o) {
  std::mt19937_64 rng(o.seed);
  const int64_t vocab = model.config().vocab_size;
  auto rand_tokens = [&](int64_t n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = int32_t(rng() % uint64_t(vocab));
    return t;
  };
  nlohmann::ordered_json out;
  out["device"] = model.device_name();
  std::vector<float> logits;
  constexpr SeqId kBenchSeq = 1u << 30;  // far from ids a server would use
  for (int64_t n : o.prompt_lengths) {
    if (n > model.max_context()) continue;
    const auto prompt = rand_tokens(n);
    std::vector<double> ts;
    for (int rep = 0; rep <= o.repeats; ++rep) {  // the first run is warm-up
      StepInput in;
      in.seq = kBenchSeq;
      in.tokens = prompt;
      const double t = now_s();
      QW_RETURN_IF_ERROR(model.step(std::span<const StepInput>(&in, 1), logits));
      if (rep > 0) ts.push_back(now_s() - t);
      model.release(kBenchSeq);
    }
    const double med = median(ts);
    out["ttft_ms"][std::to_string(n)] = med * 1e3;
    out["prefill_tok_s"][std::to_string(n)] = double(n) / med;
  }
  if (!o.prompt_lengths.empty()) {
    const int64_t n = *std::max_element(o.prompt_lengths.begin(), o.prompt_lengths.end());
    for (double f : o.prefix_reuse_fractions) {
      if (n > model.max_context() || f <= 0 || f >= 1) continue;
      const auto shared = rand_tokens(int64_t(f * double(n)));
      std::vector<double> ts;
      int64_t reused = 0;
      for (int rep = 0; rep <= o.repeats; ++rep) {
        // The earlier prompt: shared prefix + its own tail, computed and released (cached).
        auto earlier = shared, prompt = shared;
        const auto t1 = rand_tokens(n - int64_t(shared.size()));
        const auto t2 = rand_tokens(n - int64_t(shared.size()));
        earlier.insert(earlier.end(), t1.begin(), t1.end());
        prompt.insert(prompt.end(), t2.begin(), t2.end());
        StepInput in;
        in.seq = kBenchSeq;
        in.tokens = earlier;
        QW_RETURN_IF_ERROR(model.step(std::span<const StepInput>(&in, 1), logits));
        model.release(kBenchSeq);
        const double t = now_s();
        reused = model.attach_prefix(kBenchSeq + 1, prompt);
        in.seq = kBenchSeq + 1;
        in.tokens = std::span<const int32_t>(prompt).subspan(size_t(reused));
        in.start_pos = reused;
        QW_RETURN_IF_ERROR(model.step(std::span<const StepInput>(&in, 1), logits));
        if (rep > 0) ts.push_back(now_s() - t);
        model.release(kBenchSeq + 1);
      }
      char key[32];
      std::snprintf(key, sizeof key, "%.2f", f);
      out["ttft_prefix_reuse"][std::to_string(n)][key] = {{"reused_tokens", reused},
                                                          {"ttft_ms", median(ts) * 1e3}};
    }
  }
  if (!o.batch_sizes.empty()) out["decode_sampling"] = "greedy, argmax where the logits are (step_reduced)";
  for (int64_t B : o.batch_sizes) {
    std::vector<std::vector<int32_t>> prompts;
    std::vector<StepInput> ins(static_cast<size_t>(B));
    for (int64_t i = 0; i < B; ++i) prompts.push_back(rand_tokens(o.decode_context));
    for (int64_t i = 0; i < B; ++i) {
      ins[size_t(i)].seq = kBenchSeq + SeqId(i);
      ins[size_t(i)].tokens = prompts[size_t(i)];
    }
    QW_RETURN_IF_ERROR(model.step(ins, logits));
    std::vector<int32_t> tok(static_cast<size_t>(B));
    for (auto& t : tok) t = int32_t(rng() % uint64_t(vocab));
    // Greedy decoding as the server runs it: the argmax is taken where the logits are (on
    // the GPU), only the chosen ids cross to the host, and they are the next tokens.
    const std::vector<CandidateRequest> greedy(static_cast<size_t>(B), CandidateRequest{.k = 1});
    StepRows rows;
    std::vector<double> ts;
    for (int64_t s = 0; s < o.decode_steps; ++s) {
      for (int64_t i = 0; i < B; ++i) {
        ins[size_t(i)].tokens = std::span<const int32_t>(&tok[size_t(i)], 1);
        ins[size_t(i)].start_pos = o.decode_context + s;
      }
      const double t = now_s();
      QW_RETURN_IF_ERROR(model.step_reduced(ins, greedy, rows));
      for (int64_t i = 0; i < B; ++i) {
        const RowCandidates& c = rows.candidates[size_t(i)];
        if (rows.row_index[size_t(i)] < 0 && !c.ids.empty()) {
          tok[size_t(i)] = c.ids[0];
        } else {  // a whole row: its argmax
          const auto row = rows.rows.subspan(size_t(rows.row_index[size_t(i)] * vocab), size_t(vocab));
          tok[size_t(i)] = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
        }
      }
      if (s >= 4) ts.push_back(now_s() - t);  // a few warm-up steps
    }
    for (int64_t i = 0; i < B; ++i) model.release(kBenchSeq + SeqId(i));
    const double med = median(ts);
    out["decode_step_ms"][std::to_string(B)] = med * 1e3;
    out["decode_tok_s"][std::to_string(B)] = double(B) / med;
  }
  return out;
}

namespace {
struct Shape {
  double H, D, QH, KVH, I, V, L;
};
Shape shape_of(const ModelConfig& c) {
  return {double(c.hidden_size),         double(c.head_dim),          double(c.num_attention_heads),
          double(c.num_key_value_heads), double(c.intermediate_size), double(c.vocab_size),
          double(c.num_hidden_layers)};
}
// Weights of one layer, in elements (matrices only when matrices_only).
double layer_elems(const Shape& s, bool matrices_only) {
  const double qkv = (s.QH + 2 * s.KVH) * s.D;
  double e = qkv * s.H + s.H * s.QH * s.D + 2 * s.I * s.H + s.H * s.I;
  if (!matrices_only) e += qkv + 2 * s.H;
  return e;
}
}  // namespace

double decode_step_bytes(const ModelConfig& c, double elem_bytes, int64_t batch, double context,
                         double stored_weight_bytes) {
  const Shape s = shape_of(c);
  const double rows = double(batch) * s.H /*embedding rows*/;
  const double kv = double(batch) * s.L * 2 * s.KVH * s.D * (context + 1);
  if (stored_weight_bytes > 0) return stored_weight_bytes + (rows + kv) * elem_bytes;
  const double weights = s.L * layer_elems(s, false) + s.H /*final norm*/ + s.V * s.H /*lm_head*/ + rows;
  return (weights + kv) * elem_bytes;
}

double prefill_flops(const ModelConfig& c, int64_t n) {
  const Shape s = shape_of(c);
  const double dn = double(n);
  return 2 * dn * s.L * layer_elems(s, true) + 4 * s.D * s.QH * s.L * dn * (dn + 1) / 2 + 2 * s.V * s.H;
}

void add_throughput_floors(nlohmann::ordered_json& r, const ModelConfig& c, double elem_bytes,
                           const ThroughputBenchOptions& o, double copy_gbps, double gemm_tflops,
                           double stored_weight_bytes) {
  nlohmann::ordered_json f;
  f["copy_gbps"] = copy_gbps;
  f["gemm_tflops"] = gemm_tflops;
  // Decode steps run at contexts decode_context .. decode_context + decode_steps - 1.
  const double ctx = double(o.decode_context) + double(o.decode_steps - 1) / 2;
  for (int64_t B : o.batch_sizes) {
    const std::string k = std::to_string(B);
    if (!r.contains("decode_step_ms") || !r["decode_step_ms"].contains(k)) continue;
    const double bytes = decode_step_bytes(c, elem_bytes, B, ctx, stored_weight_bytes);
    const double floor_ms = bytes / (copy_gbps * 1e9) * 1e3;
    const double ms = r["decode_step_ms"][k].get<double>();
    f["decode"][k] = {{"bytes_per_step", bytes},
                      {"floor_ms", floor_ms},
                      {"measured_ms", ms},
                      {"ratio", floor_ms / ms},
                      {"achieved_gbps", bytes / (ms * 1e-3) / 1e9}};
  }
  for (int64_t n : o.prompt_lengths) {
    const std::string k = std::to_string(n);
    if (!r.contains("ttft_ms") || !r["ttft_ms"].contains(k)) continue;
    const double flops = prefill_flops(c, n);
    const double floor_ms = flops / (gemm_tflops * 1e12) * 1e3;
    const double ms = r["ttft_ms"][k].get<double>();
    f["prefill"][k] = {{"flops", flops},
                       {"floor_ms", floor_ms},
                       {"measured_ms", ms},
                       {"ratio", floor_ms / ms},
                       {"achieved_tflops", flops / (ms * 1e-3) / 1e12}};
  }
  r["floors"] = f;
}

}  // namespace qw

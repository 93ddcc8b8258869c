#include "compiler/gptq/model_quantizer.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "artifact/tensor_names.h"
#include "compiler/gptq/safetensors_writer.h"
#include "compiler/weight_convert.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "cpu/rope.h"

namespace qw::gptq {

namespace {

namespace fs = std::filesystem;

Expected<std::vector<float>> load_f32(const Checkpoint& ckpt, const std::string& name,
                                      int64_t numel) {
  return load_tensor_f32(ckpt, name, numel);
}

// y[t][n] = sum_k x[t][k] w[n][k] (+ bias[n]).
std::vector<float> linear(const std::vector<float>& x, int64_t tokens, const std::vector<float>& w,
                          int64_t n, int64_t k, const float* bias, unsigned threads) {
  std::vector<float> y(size_t(tokens * n));
  parallel_for(n, threads, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      for (int64_t t = 0; t < tokens; ++t)
        y[size_t(t * n + r)] =
            cpu::dot(&x[size_t(t * k)], &w[size_t(r * k)], k) + (bias ? bias[r] : 0.0f);
  });
  return y;
}

// The Hessians of one sublayer input: every calibration token (plain GPTQ), or its fit and
// validation tokens and their sum (the damping search), and the held-out tokens (a report).
struct InputHessians {
  std::optional<Hessian> all, fit, val, full, held;
};

class LayerQuantizer {
 public:
  LayerQuantizer(const ModelConfig& c, const Checkpoint& ck, const ModelQuantizeOptions& o,
                 ProgressBar& bar)
      : c_(c), ck_(ck), o_(o), bar_(bar) {}

  // Quantizes base (+".weight", [n, k]) with the Hessians of its inputs (GPTQ, with or without
  // the damping search) or alone (RTN, h null), appends its GPTQ tensors and returns the
  // dequantized weight the forward continues with. With a held-out Hessian it also appends the
  // linear's held-out errors to the quality report, as decoder layer `layer`.
  Expected<std::vector<float>> quantize(const std::string& base, int64_t n, int64_t k,
                                        const InputHessians* h, SafetensorsWriter& out,
                                        int64_t layer = 0) {
    if (o_.cancel && o_.cancel->load()) return Status::Error("interrupted");
    QW_ASSIGN_OR_RETURN(std::vector<float> w,
                        load_tensor_f32(ck_, base + ".weight", n * k, o_.settings.threads));
    std::optional<DampChoice> choice;
    Expected<QuantizedLinear> q = Status::Error("not run");
    if (!h) {
      q = quantize_rtn(w.data(), n, k, o_.settings);
    } else if (h->all) {
      q = quantize_gptq(w.data(), n, k, *h->all, o_.settings);
    } else {
      Expected<SearchedLinear> r =
          quantize_damp_searched(w.data(), n, k, *h->fit, *h->val, *h->full, o_.settings);
      if (r.ok()) {
        q = std::move(r->q);
        choice = r->choice;
      } else {
        q = r.status();
      }
    }
    if (!q.ok()) return q.status().context("tensor " + base + ".weight");
    QW_RETURN_IF_ERROR(write_gptq_linear(out, base, *q, CheckpointFormat::kGptqV2));
    if (choice && o_.damp_choices) {
      choice->layer = layer;
      choice->linear = linear_short_name(base);
      o_.damp_choices->push_back(*choice);
    }
    bar_.advance(1);
    if (!h) return std::vector<float>();
    std::vector<float> deq = dequantize_linear(*q, o_.settings.threads);
    if (h->held && o_.quality) {
      Expected<std::vector<float>> rtn = rtn_dequantized(w.data(), n, k, o_.settings);
      if (!rtn.ok()) return rtn.status().context("tensor " + base + ".weight (RTN)");
      o_.quality->push_back(
          {layer, linear_short_name(base),
           heldout_errors(*h->held, w.data(), deq.data(), rtn->data(), n, k, o_.settings.threads)});
    }
    return deq;
  }

 private:
  const ModelConfig& c_;
  const Checkpoint& ck_;
  const ModelQuantizeOptions& o_;
  ProgressBar& bar_;
};

// Causal GQA attention over one sequence; q [T][nq*hd], k/v [T][nkv*hd] (RoPE applied).
void attention(const float* q, const float* k, const float* v, int64_t T, int64_t nq, int64_t nkv,
               int64_t hd, float* out, unsigned threads) {
  const int64_t group = nq / nkv;
  const float scale = 1.0f / std::sqrt(float(hd));
  parallel_for(nq, threads, [&](int64_t b, int64_t e) {
    std::vector<float> p(static_cast<size_t>(T));
    for (int64_t h = b; h < e; ++h) {
      const int64_t kvh = h / group;
      for (int64_t t = 0; t < T; ++t) {
        const float* qt = q + (t * nq + h) * hd;
        float mx = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
          p[size_t(s)] = cpu::dot(qt, k + (s * nkv + kvh) * hd, hd) * scale;
          mx = std::max(mx, p[size_t(s)]);
        }
        double sum = 0;
        for (int64_t s = 0; s <= t; ++s) sum += (p[size_t(s)] = std::exp(p[size_t(s)] - mx));
        float* o = out + (t * nq + h) * hd;
        std::fill_n(o, hd, 0.0f);
        for (int64_t s = 0; s <= t; ++s)
          cpu::axpy(float(p[size_t(s)] / sum), v + (s * nkv + kvh) * hd, o, hd);
      }
    }
  });
}

}  // namespace

Expected<std::vector<float>> load_tensor_f32(const Checkpoint& ckpt, const std::string& name,
                                             int64_t numel, unsigned threads) {
  QW_ASSIGN_OR_RETURN(const SafetensorInfo* t, ckpt.find(name));
  if (t->numel() != numel)
    return Status::Error("tensor " + name + " has " + std::to_string(t->numel()) +
                         " elements, config implies " + std::to_string(numel));
  std::vector<float> out(static_cast<size_t>(numel));
  // Chunks of 1M elements: conversion is elementwise, so any split gives the same values.
  constexpr int64_t kChunk = int64_t(1) << 20;
  const int64_t chunks = (numel + kChunk - 1) / kChunk;
  const size_t esize = dtype_size(t->dtype);
  std::vector<Status> errs(static_cast<size_t>(chunks));
  parallel_for(chunks, std::max(1u, threads), [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      const int64_t lo = c * kChunk, n = std::min(kChunk, numel - lo);
      ConversionStats stats;
      errs[size_t(c)] = convert_elements(t->data + uint64_t(lo) * esize, t->dtype,
                                         reinterpret_cast<uint8_t*>(out.data() + lo), DType::F32,
                                         uint64_t(n), stats);
    }
  });
  for (const Status& st : errs) QW_RETURN_IF_ERROR(st.context("tensor " + name));
  return out;
}

Expected<std::vector<float>> embed_calibration(
    const ModelConfig& c, const Checkpoint& ck,
    const std::vector<std::vector<int32_t>>& calibration) {
  const int64_t H = c.hidden_size;
  int64_t T = 0;
  for (const auto& s : calibration) T += int64_t(s.size());
  QW_ASSIGN_OR_RETURN(const SafetensorInfo* emb, ck.find(names::kEmbed));
  std::vector<float> x(size_t(T * H));
  ConversionStats st;
  int64_t t = 0;
  for (const auto& s : calibration)
    for (int32_t id : s) {
      if (id < 0 || id >= c.vocab_size) return Status::Error("calibration token id out of range");
      QW_RETURN_IF_ERROR(convert_elements(
          emb->data + uint64_t(id) * uint64_t(H) * dtype_size(emb->dtype), emb->dtype,
          reinterpret_cast<uint8_t*>(&x[size_t(t * H)]), DType::F32, uint64_t(H), st));
      ++t;
    }
  return x;
}

std::string gptq_layer_file(int64_t layer) {
  char file[64];
  std::snprintf(file, sizeof file, "layer-%05lld.safetensors", (long long)layer);
  return file;
}

GptqConfig quantized_model_config(const ModelQuantizeOptions& o) {
  GptqConfig g;
  g.bits = 4;
  g.group_size = int(o.settings.group_size);
  g.sym = o.settings.sym;
  g.desc_act = o.settings.act_order;
  g.format = CheckpointFormat::kGptqV2;
  g.source = "qwc " + std::string(o.rtn ? "RTN" : "GPTQ") + " quantization";
  return g;
}

Status check_quality_options(const ModelQuantizeOptions& o) {
  if (!o.quality && o.heldout.empty()) return Status::Ok();
  if (o.rtn) return Status::Error("internal: a quality report needs GPTQ, not RTN");
  if (!o.quality || o.heldout.empty())
    return Status::Error("internal: held-out sequences and a quality report go together");
  return Status::Ok();
}

std::string linear_short_name(const std::string& base) {
  const size_t dot = base.rfind('.');
  return dot == std::string::npos ? base : base.substr(dot + 1);
}

std::vector<std::vector<int32_t>> split_calibration(const std::vector<int32_t>& ids,
                                                    int64_t seq_len) {
  std::vector<std::vector<int32_t>> out;
  for (size_t b = 0; b < ids.size(); b += size_t(seq_len))
    out.emplace_back(ids.begin() + int64_t(b),
                     ids.begin() + int64_t(std::min(ids.size(), b + size_t(seq_len))));
  if (out.size() > 1 && out.back().size() < 16) out.pop_back();  // too short to be useful
  return out;
}

Expected<GptqConfig> quantize_model(const ModelConfig& c, const Checkpoint& ck,
                                    const ModelQuantizeOptions& o) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const int64_t nq = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int64_t qd = nq * hd, kvd = nkv * hd;
  const unsigned th = std::max(1u, o.settings.threads);
  const bool gptq = !o.rtn;
  if (gptq && o.calibration.empty())
    return Status::Error("GPTQ needs calibration text (--calib FILE or --calib-builtin)");
  QW_RETURN_IF_ERROR(check_quality_options(o));
  const bool quality = o.quality != nullptr;
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) return Status::Error(o.out_dir + ": cannot create: " + ec.message());

  // The sequences the forward runs: the calibration ones, then any held-out ones. Tokens
  // [0, Tc) feed GPTQ's Hessians, [Tc, T) only the quality report.
  std::vector<std::vector<int32_t>> joined;
  if (quality) {
    joined = o.calibration;
    joined.insert(joined.end(), o.heldout.begin(), o.heldout.end());
  }
  const std::vector<std::vector<int32_t>>& seqs = quality ? joined : o.calibration;
  // Hidden states of every sequence, flattened [tokens][H].
  std::vector<int64_t> seq_begin;
  int64_t T = 0, Tc = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (i == o.calibration.size()) Tc = T;
    seq_begin.push_back(T);
    T += int64_t(seqs[i].size());
  }
  seq_begin.push_back(T);
  if (!quality) Tc = T;
  std::vector<float> x;
  cpu::RopeParams rope;
  if (gptq) {
    QW_ASSIGN_OR_RETURN(x, embed_calibration(c, ck, seqs));
    QW_ASSIGN_OR_RETURN(rope, cpu::compute_rope_params(c));
  }
  // The damping search's split of the calibration tokens [0, Tc) into runs of fit and
  // validation tokens (none without the search, or with too few validation tokens).
  const DampSearchPlan plan = plan_damp_search(o.calibration, gptq && o.damp_search);
  const std::vector<TokenRun> runs = mask_runs(plan.val_mask);
  // The Hessians of an input [T][k]: its calibration rows [0, Tc) whole or split, and with a
  // report its held-out rows [Tc, T).
  auto input_hessians = [&](const std::vector<float>& in, int64_t k) -> Expected<InputHessians> {
    InputHessians h;
    if (plan.enabled) {
      h.fit.emplace(k);
      h.val.emplace(k);
      for (const TokenRun& r : runs)
        (r.val ? *h.val : *h.fit).add(&in[size_t(r.begin * k)], r.count, th);
      h.full.emplace(*h.fit);
      QW_RETURN_IF_ERROR(h.full->add_sum(*h.val));
    } else {
      h.all.emplace(k);
      h.all->add(in.data(), Tc, th);
    }
    if (quality) {
      h.held.emplace(k);
      h.held->add(&in[size_t(Tc * k)], T - Tc, th);
    }
    return h;
  };

  ProgressBar bar(gptq ? "gptq" : "rtn", uint64_t(c.num_hidden_layers * 7));
  LayerQuantizer lq(c, ck, o, bar);
  std::vector<std::pair<std::string, std::string>> weight_map;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    auto L = [&](const char* s) { return names::layer(l, s); };
    SafetensorsWriter out;
    const std::string q_b = L("self_attn.q_proj"), k_b = L("self_attn.k_proj"),
                      v_b = L("self_attn.v_proj");
    const std::string o_b = L("self_attn.o_proj"), g_b = L("mlp.gate_proj"), u_b = L("mlp.up_proj");
    const std::string d_b = L("mlp.down_proj");
    if (!gptq) {
      for (auto [b, n, k] : {std::tuple{q_b, qd, H},
                             {k_b, kvd, H},
                             {v_b, kvd, H},
                             {o_b, H, qd},
                             {g_b, I, H},
                             {u_b, I, H},
                             {d_b, H, I}})
        QW_RETURN_IF_ERROR(lq.quantize(b, n, k, nullptr, out).status());
    } else {
      QW_ASSIGN_OR_RETURN(auto ln1_w, load_f32(ck, L(names::kInputNorm), H));
      QW_ASSIGN_OR_RETURN(auto ln2_w, load_f32(ck, L(names::kPostNorm), H));
      std::vector<float> ln(size_t(T * H));
      for (int64_t t = 0; t < T; ++t)
        cpu::rms_norm(&x[size_t(t * H)], ln1_w.data(), H, c.rms_norm_eps, &ln[size_t(t * H)]);
      QW_ASSIGN_OR_RETURN(const InputHessians h_in, input_hessians(ln, H));
      QW_ASSIGN_OR_RETURN(auto wq, lq.quantize(q_b, qd, H, &h_in, out, l));
      QW_ASSIGN_OR_RETURN(auto wk, lq.quantize(k_b, kvd, H, &h_in, out, l));
      QW_ASSIGN_OR_RETURN(auto wv, lq.quantize(v_b, kvd, H, &h_in, out, l));
      QW_ASSIGN_OR_RETURN(auto bq, load_f32(ck, q_b + ".bias", qd));
      QW_ASSIGN_OR_RETURN(auto bk, load_f32(ck, k_b + ".bias", kvd));
      QW_ASSIGN_OR_RETURN(auto bv, load_f32(ck, v_b + ".bias", kvd));
      auto q = linear(ln, T, wq, qd, H, bq.data(), th);
      auto k = linear(ln, T, wk, kvd, H, bk.data(), th);
      auto v = linear(ln, T, wv, kvd, H, bv.data(), th);
      std::vector<float> cs(size_t(hd / 2)), sn(size_t(hd / 2)), attn(size_t(T * qd));
      for (size_t s = 0; s + 1 < seq_begin.size(); ++s) {
        const int64_t b = seq_begin[s], n = seq_begin[s + 1] - b;
        for (int64_t t = 0; t < n; ++t) {
          cpu::rope_cos_sin(rope, t, cs.data(), sn.data());
          cpu::apply_rope(&q[size_t((b + t) * qd)], nq, hd, cs.data(), sn.data());
          cpu::apply_rope(&k[size_t((b + t) * kvd)], nkv, hd, cs.data(), sn.data());
        }
        attention(&q[size_t(b * qd)], &k[size_t(b * kvd)], &v[size_t(b * kvd)], n, nq, nkv, hd,
                  &attn[size_t(b * qd)], th);
      }
      QW_ASSIGN_OR_RETURN(const InputHessians h_o, input_hessians(attn, qd));
      QW_ASSIGN_OR_RETURN(auto wo, lq.quantize(o_b, H, qd, &h_o, out, l));
      auto ao = linear(attn, T, wo, H, qd, nullptr, th);
      for (size_t i = 0; i < x.size(); ++i) x[i] += ao[i];
      for (int64_t t = 0; t < T; ++t)
        cpu::rms_norm(&x[size_t(t * H)], ln2_w.data(), H, c.rms_norm_eps, &ln[size_t(t * H)]);
      QW_ASSIGN_OR_RETURN(const InputHessians h_mlp, input_hessians(ln, H));
      QW_ASSIGN_OR_RETURN(auto wg, lq.quantize(g_b, I, H, &h_mlp, out, l));
      QW_ASSIGN_OR_RETURN(auto wu, lq.quantize(u_b, I, H, &h_mlp, out, l));
      auto g = linear(ln, T, wg, I, H, nullptr, th);
      auto u = linear(ln, T, wu, I, H, nullptr, th);
      for (int64_t t = 0; t < T; ++t)
        cpu::silu_mul(&g[size_t(t * I)], &u[size_t(t * I)], I, &g[size_t(t * I)]);
      QW_ASSIGN_OR_RETURN(const InputHessians h_d, input_hessians(g, I));
      QW_ASSIGN_OR_RETURN(auto wd, lq.quantize(d_b, H, I, &h_d, out, l));
      auto dn = linear(g, T, wd, H, I, nullptr, th);
      for (size_t i = 0; i < x.size(); ++i) x[i] += dn[i];
    }
    const std::string file = gptq_layer_file(l);
    QW_RETURN_IF_ERROR(out.write((fs::path(o.out_dir) / file).string()));
    for (const auto& n : out.names()) weight_map.emplace_back(n, file);
  }
  bar.finish();
  QW_RETURN_IF_ERROR(write_safetensors_index(o.out_dir, weight_map));
  return quantized_model_config(o);
}

}  // namespace qw::gptq

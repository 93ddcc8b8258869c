#include "compiler/gptq/gpu/calib_forward.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "artifact/tensor_names.h"
#include "compiler/gptq/gpu/gptq_solver.h"
#include "compiler/gptq/gpu/kernels.h"
#include "compiler/gptq/gpu/quality_gpu.h"
#include "compiler/gptq/safetensors_writer.h"
#include "core/progress.h"
#include "cpu/rope.h"

namespace qw::gptq::gpu {

namespace {

namespace fs = std::filesystem;

// Wall time per stage, each closed by a stream sync so GPU work is charged where it ran.
struct StageTimes {
  double load = 0, forward = 0, hessian = 0, factor = 0, solve = 0, write = 0, quality = 0,
         search = 0;
};

class StageTimer {
 public:
  StageTimer(const GpuContext& ctx, double& acc)
      : ctx_(ctx), acc_(acc), t0_(std::chrono::steady_clock::now()) {}
  ~StageTimer() {
    (void)cudaStreamSynchronize(ctx_.stream());  // errors surface at the next checked call
    acc_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;

 private:
  const GpuContext& ctx_;
  double& acc_;
  std::chrono::steady_clock::time_point t0_;
};

Expected<DeviceBuffer> upload_vector(const std::vector<float>& v, cudaStream_t s,
                                     const std::string& what) {
  QW_ASSIGN_OR_RETURN(DeviceBuffer b, device_array<float>(v.size(), what));
  QW_RETURN_IF_ERROR(upload(b, v.data(), v.size() * sizeof(float), s, what));
  return b;
}

// The damping search's fit and validation rows of the calibration tokens (device indices).
struct SearchRows {
  bool enabled = false;
  const int32_t* fit = nullptr;
  const int32_t* val = nullptr;
  int64_t fit_count = 0, val_count = 0;
};

// One linear of a group that reads the same input: base name and output features.
struct LinearSpec {
  std::string base;
  int64_t n;
};

class GpuLayerQuantizer {
 public:
  GpuLayerQuantizer(const GpuContext& ctx, const ModelConfig& c, const Checkpoint& ck,
                    const ModelQuantizeOptions& o, ProgressBar& bar, StageTimes& times,
                    SearchRows rows)
      : ctx_(ctx), c_(c), ck_(ck), o_(o), bar_(bar), times_(times), rows_(rows) {}

  // The factor of the Hessian of x [T][k] (device), named after `what`.
  Expected<GptqFactor> factor(const float* x, int64_t T, int64_t k, const std::string& what) {
    DeviceBuffer S;
    {
      StageTimer t(ctx_, times_.hessian);
      QW_RETURN_IF_ERROR(hessian_sum(ctx_, x, T, k, S, what));
    }
    StageTimer t(ctx_, times_.factor);
    // hessian_sum's S: column-major lower triangle, entry (a, b) at a + b * k.
    return factor_hessian(ctx_, S, 1, k, k, T, o_.settings, what);
  }

  // What quantizing the linears fed by x [T][k] needs: the factor of the Hessian of its
  // calibration rows [0, Tc), or with the damping search the sums over their fit rows (lower
  // triangle) and validation rows (mirrored); with a quality report, the Hessian of its
  // held-out rows [Tc, T) (else an empty buffer).
  struct Inputs {
    int64_t k = 0;
    GptqFactor f;
    DeviceBuffer held;
    bool search = false;
    DeviceBuffer s_fit, s_val;
  };
  Expected<Inputs> inputs(const float* x, int64_t Tc, int64_t T, int64_t k,
                          const std::string& what) {
    Inputs in;
    in.k = k;
    if (rows_.enabled) {
      in.search = true;
      StageTimer t(ctx_, times_.hessian);
      QW_RETURN_IF_ERROR(hessian_sum_rows(ctx_, x, rows_.fit, rows_.fit_count, k, in.s_fit,
                                          what + " (fit tokens)"));
      QW_RETURN_IF_ERROR(hessian_sum_rows(ctx_, x, rows_.val, rows_.val_count, k, in.s_val,
                                          what + " (validation tokens)"));
      QW_RETURN_IF_ERROR(check_cuda(launch_mirror_lower(in.s_val.as<double>(), k, ctx_.stream()),
                                    "mirroring the validation Hessian of " + what));
    } else {
      QW_ASSIGN_OR_RETURN(in.f, factor(x, Tc, k, what));
    }
    QW_ASSIGN_OR_RETURN(in.held, heldout(x, Tc, T, k, what));
    return in;
  }

 private:
  Expected<DeviceBuffer> heldout(const float* x, int64_t Tc, int64_t T, int64_t k,
                                 const std::string& what) {
    if (!o_.quality) return DeviceBuffer();
    StageTimer t(ctx_, times_.quality);
    return heldout_hessian(ctx_, x + Tc * k, T - Tc, k, what);
  }

 public:
  // Quantizes base + ".weight" ([n, k]) with in.f, appends its GPTQ tensors to `out` and
  // returns the quantized weight on the device for the forward. With a held-out Hessian
  // (non-empty in.held) it also appends the linear's held-out errors to the quality report,
  // as decoder layer `layer`.
  Expected<DeviceBuffer> quantize(const std::string& base, int64_t n, int64_t k, const Inputs& in,
                                  SafetensorsWriter& out, int64_t layer) {
    const GptqFactor& f = in.f;
    const DeviceBuffer& held = in.held;
    if (o_.cancel && o_.cancel->load()) return Status::Error("interrupted");
    const std::string name = base + ".weight";
    DeviceBuffer w;
    std::vector<float> host;  // kept for RTN when there is a report
    {
      StageTimer t(ctx_, times_.load);
      QW_ASSIGN_OR_RETURN(host, load_tensor_f32(ck_, name, n * k, o_.settings.threads));
      QW_ASSIGN_OR_RETURN(w, upload_vector(host, ctx_.stream(), "tensor " + name));
    }
    if (!held.get()) host = {};
    DeviceBuffer deq;
    Expected<QuantizedLinear> q = Status::Error("not run");
    {
      StageTimer t(ctx_, times_.solve);
      q = solve_gptq(ctx_, w.as<float>(), n, k, f, o_.settings, &deq, "tensor " + name);
    }
    if (!q.ok()) return q.status().context("tensor " + name);
    {
      StageTimer t(ctx_, times_.write);
      QW_RETURN_IF_ERROR(write_gptq_linear(out, base, *q, CheckpointFormat::kGptqV2));
    }
    if (held.get() && o_.quality) {
      QW_ASSIGN_OR_RETURN(HeldoutErrors e, report_errors(base, n, k, held, host, w, deq));
      o_.quality->push_back({layer, linear_short_name(base), e});
    }
    bar_.advance(1);
    return deq;
  }

  // The held-out errors of base + ".weight" (host: W as loaded, w: on the device, deq: as
  // quantized) against RTN on the host (a per-element rounding), on the held-out Hessian.
  Expected<HeldoutErrors> report_errors(const std::string& base, int64_t n, int64_t k,
                                        const DeviceBuffer& held, const std::vector<float>& host,
                                        const DeviceBuffer& w, const DeviceBuffer& deq) {
    StageTimer t(ctx_, times_.quality);
    const std::string name = base + ".weight";
    Expected<std::vector<float>> rtn_host = rtn_dequantized(host.data(), n, k, o_.settings);
    if (!rtn_host.ok()) return rtn_host.status().context("tensor " + name + " (RTN)");
    QW_ASSIGN_OR_RETURN(DeviceBuffer rtn,
                        upload_vector(*rtn_host, ctx_.stream(), "RTN of tensor " + name));
    return heldout_errors_gpu(ctx_, held, k, w.as<float>(), deq.as<float>(), rtn.as<float>(), n,
                              "tensor " + name);
  }

  // Quantizes the linears that read one input (q/k/v, gate/up, or one alone) with `in` and
  // returns their quantized weights on the device, in order. Without the search, quantize()
  // for each in turn; with it, each linear's candidates (RTN; GPTQ with d, 10d, 100d on the fit
  // rows) are measured on the validation rows, the winners quantized again on fit + validation
  // (damp_search.h), and the tensors written in order.
  Expected<std::vector<DeviceBuffer>> quantize_group(const std::vector<LinearSpec>& specs,
                                                     Inputs& in, SafetensorsWriter& out,
                                                     int64_t layer) {
    std::vector<DeviceBuffer> deq;
    if (!in.search) {
      for (const LinearSpec& l : specs) {
        QW_ASSIGN_OR_RETURN(DeviceBuffer d, quantize(l.base, l.n, in.k, in, out, layer));
        deq.push_back(std::move(d));
      }
      return deq;
    }
    if (o_.cancel && o_.cancel->load()) return Status::Error("interrupted");
    const int64_t k = in.k, m = int64_t(specs.size());
    const unsigned th = std::max(1u, o_.settings.threads);
    const std::string group = "the input of " + specs[0].base;
    std::vector<std::vector<float>> host(static_cast<size_t>(m));
    std::vector<DeviceBuffer> w(static_cast<size_t>(m));
    {
      StageTimer t(ctx_, times_.load);
      for (int64_t i = 0; i < m; ++i) {
        const std::string name = specs[size_t(i)].base + ".weight";
        QW_ASSIGN_OR_RETURN(host[size_t(i)],
                            load_tensor_f32(ck_, name, specs[size_t(i)].n * k, th));
        QW_ASSIGN_OR_RETURN(w[size_t(i)],
                            upload_vector(host[size_t(i)], ctx_.stream(), "tensor " + name));
      }
    }
    // Candidates on the fit rows, measured on the validation rows.
    std::vector<DampChoice> choice(static_cast<size_t>(m));
    {
      StageTimer t(ctx_, times_.search);
      for (int c = 1; c < kDampCandidates; ++c) {
        QuantizeSettings sc = o_.settings;
        sc.damp_percent = o_.settings.damp_percent * kDampCandidateList[size_t(c)].factor;
        const std::string cand =
            std::string(" (damping candidate ") + kDampCandidateList[size_t(c)].name + ")";
        QW_ASSIGN_OR_RETURN(GptqFactor f, factor_hessian(ctx_, in.s_fit, 1, k, k, rows_.fit_count,
                                                         sc, group + cand));
        for (int64_t i = 0; i < m; ++i) {
          const std::string name = "tensor " + specs[size_t(i)].base + ".weight";
          const int64_t n = specs[size_t(i)].n;
          if (c == 1) {
            // RTN, in the fit Hessian's column order (the identity without act-order).
            Expected<QuantizedLinear> r =
                quantize_rtn_ordered(host[size_t(i)].data(), n, k, f.perm, o_.settings);
            if (!r.ok()) return r.status().context(name + " (RTN)");
            QW_ASSIGN_OR_RETURN(DeviceBuffer rd, upload_vector(dequantize_linear(*r, th),
                                                               ctx_.stream(), "RTN of " + name));
            QW_ASSIGN_OR_RETURN(std::vector<double> e,
                                weight_error_forms_gpu(ctx_, in.s_val, k, w[size_t(i)].as<float>(),
                                                       {rd.as<float>()}, n, name + " (RTN)"));
            choice[size_t(i)].val_err[0] = e[0];
          }
          DeviceBuffer d;
          Expected<QuantizedLinear> q =
              solve_gptq(ctx_, w[size_t(i)].as<float>(), n, k, f, sc, &d, name + cand);
          if (!q.ok()) return q.status().context(name);
          QW_ASSIGN_OR_RETURN(std::vector<double> e,
                              weight_error_forms_gpu(ctx_, in.s_val, k, w[size_t(i)].as<float>(),
                                                     {d.as<float>()}, n, name + cand));
          choice[size_t(i)].val_err[size_t(c)] = e[0];
        }
      }
      for (DampChoice& ch : choice) ch.candidate = choose_damp_candidate(ch.val_err);
    }
    // The winners on every calibration row: the fit sum plus the validation sum.
    {
      StageTimer t(ctx_, times_.hessian);
      QW_RETURN_IF_ERROR(check_cuda(
          launch_add_lower(in.s_fit.as<double>(), in.s_val.as<double>(), k, ctx_.stream()),
          "the calibration Hessian of " + group));
      QW_RETURN_IF_ERROR(ctx_.sync("the calibration Hessian of " + group));
      in.s_val.reset();
    }
    const int64_t tokens = rows_.fit_count + rows_.val_count;
    std::vector<QuantizedLinear> q(static_cast<size_t>(m));
    deq.resize(size_t(m));
    std::vector<int64_t> order;  // the column order on all rows, once known
    for (int c = 1; c < kDampCandidates; ++c) {
      bool used = false;
      for (const DampChoice& ch : choice) used = used || ch.candidate == c;
      if (!used) continue;
      QuantizeSettings sc = o_.settings;
      sc.damp_percent = o_.settings.damp_percent * kDampCandidateList[size_t(c)].factor;
      GptqFactor f;
      {
        StageTimer t(ctx_, times_.factor);
        QW_ASSIGN_OR_RETURN(f, factor_hessian(ctx_, in.s_fit, 1, k, k, tokens, sc, group));
      }
      order = f.perm;
      StageTimer t(ctx_, times_.solve);
      for (int64_t i = 0; i < m; ++i) {
        if (choice[size_t(i)].candidate != c) continue;
        const std::string name = "tensor " + specs[size_t(i)].base + ".weight";
        Expected<QuantizedLinear> r = solve_gptq(ctx_, w[size_t(i)].as<float>(), specs[size_t(i)].n,
                                                 k, f, sc, &deq[size_t(i)], name);
        if (!r.ok()) return r.status().context(name);
        q[size_t(i)] = std::move(*r);
        choice[size_t(i)].damp = sc.damp_percent;
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      if (!choice[size_t(i)].rtn()) continue;
      StageTimer t(ctx_, times_.search);
      if (order.empty()) {
        QW_ASSIGN_OR_RETURN(
            order, hessian_order(ctx_, in.s_fit, 1, k, k, tokens, o_.settings.act_order, group));
      }
      const std::string name = "tensor " + specs[size_t(i)].base + ".weight";
      Expected<QuantizedLinear> r =
          quantize_rtn_ordered(host[size_t(i)].data(), specs[size_t(i)].n, k, order, o_.settings);
      if (!r.ok()) return r.status().context(name + " (RTN)");
      q[size_t(i)] = std::move(*r);
      QW_ASSIGN_OR_RETURN(deq[size_t(i)], upload_vector(dequantize_linear(q[size_t(i)], th),
                                                        ctx_.stream(), "RTN of " + name));
    }
    // Written, reported and counted in order, as quantize() does one linear at a time.
    for (int64_t i = 0; i < m; ++i) {
      const std::string& base = specs[size_t(i)].base;
      const int64_t n = specs[size_t(i)].n;
      {
        StageTimer t(ctx_, times_.write);
        QW_RETURN_IF_ERROR(write_gptq_linear(out, base, q[size_t(i)], CheckpointFormat::kGptqV2));
      }
      q[size_t(i)] = {};
      if (o_.damp_choices) {
        choice[size_t(i)].layer = layer;
        choice[size_t(i)].linear = linear_short_name(base);
        o_.damp_choices->push_back(choice[size_t(i)]);
      }
      if (in.held.get() && o_.quality) {
        QW_ASSIGN_OR_RETURN(HeldoutErrors e, report_errors(base, n, k, in.held, host[size_t(i)],
                                                           w[size_t(i)], deq[size_t(i)]));
        o_.quality->push_back({layer, linear_short_name(base), e});
      }
      host[size_t(i)] = {};
      w[size_t(i)].reset();
      bar_.advance(1);
    }
    return deq;
  }

  // y [T][n] = x [T][k] W^T (+ bias), W [n][k] row-major on the device.
  Status linear(const float* x, int64_t T, const DeviceBuffer& w, int64_t n, int64_t k,
                const float* bias, DeviceBuffer& y, const std::string& what) {
    StageTimer t(ctx_, times_.forward);
    QW_ASSIGN_OR_RETURN(y, device_array<float>(size_t(T * n), "the output of " + what));
    const float one = 1.0f, zero = 0.0f;
    // Column-major view: Y^T (n x T) = W (n x k, stored as k x n) ^T * X^T (k x T).
    QW_RETURN_IF_ERROR(check_cublas(
        ctx_.api().sgemm(ctx_.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(T), int(k), &one,
                         w.as<float>(), int(k), x, int(k), &zero, y.as<float>(), int(n)),
        "SGEMM of " + what));
    if (bias)
      QW_RETURN_IF_ERROR(
          check_cuda(launch_add_bias(y.as<float>(), bias, T, n, ctx_.stream()), "bias of " + what));
    return Status::Ok();
  }

 private:
  const GpuContext& ctx_;
  const ModelConfig& c_;
  const Checkpoint& ck_;
  const ModelQuantizeOptions& o_;
  ProgressBar& bar_;
  StageTimes& times_;
  SearchRows rows_;
};

}  // namespace

Expected<GptqConfig> quantize_model_gpu(const ModelConfig& c, const Checkpoint& ck,
                                        const ModelQuantizeOptions& o) {
  if (o.rtn) return quantize_model(c, ck, o);  // no activations, nothing for the GPU to do
  if (o.calibration.empty())
    return Status::Error("GPTQ needs calibration text (--calib FILE or --calib-builtin)");
  QW_RETURN_IF_ERROR(check_quality_options(o));
  const auto t_start = std::chrono::steady_clock::now();
  const int64_t H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const int64_t nq = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int64_t qd = nq * hd, kvd = nkv * hd;
  if (hd <= 0 || hd % 2 != 0 || nkv <= 0 || nq % nkv != 0)
    return Status::Error("GPTQ on the GPU: unsupported attention shape (head_dim " +
                         std::to_string(hd) + ", heads " + std::to_string(nq) + "/" +
                         std::to_string(nkv) + ")");
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) return Status::Error(o.out_dir + ": cannot create: " + ec.message());

  // The sequences the forward runs: the calibration ones, then any held-out ones (a quality
  // report). Tokens [0, Tc) feed GPTQ's Hessians, [Tc, T) only the report. The calibration
  // rows see the same kernels with and without held-out rows after them, except that cuBLAS
  // may pick another SGEMM for the longer batch (last-bit differences, see calib_forward.h).
  std::vector<std::vector<int32_t>> joined;
  if (o.quality) {
    joined = o.calibration;
    joined.insert(joined.end(), o.heldout.begin(), o.heldout.end());
  }
  const std::vector<std::vector<int32_t>>& seqs = o.quality ? joined : o.calibration;
  // Token bookkeeping: each token's position in its sequence and its sequence's first token.
  int64_t T = 0, Tc = 0, max_len = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (i == o.calibration.size()) Tc = T;
    T += int64_t(seqs[i].size());
    max_len = std::max(max_len, int64_t(seqs[i].size()));
  }
  if (!o.quality) Tc = T;
  if (T <= 0 || T > 0x7fffffff)
    return Status::Error("GPTQ on the GPU: calibration token count out of range");
  std::vector<int32_t> pos(static_cast<size_t>(T)), start(static_cast<size_t>(T));
  {
    int64_t t = 0;
    for (const auto& s : seqs)
      for (size_t i = 0; i < s.size(); ++i, ++t) {
        pos[size_t(t)] = int32_t(i);
        start[size_t(t)] = int32_t(t - int64_t(i));
      }
  }
  // RoPE tables from the CPU's own cos/sin, so the rotation's inputs are identical.
  QW_ASSIGN_OR_RETURN(cpu::RopeParams rope, cpu::compute_rope_params(c));
  std::vector<float> cos_t(size_t(max_len * hd / 2)), sin_t(size_t(max_len * hd / 2));
  for (int64_t p = 0; p < max_len; ++p)
    cpu::rope_cos_sin(rope, p, &cos_t[size_t(p * hd / 2)], &sin_t[size_t(p * hd / 2)]);
  QW_ASSIGN_OR_RETURN(std::vector<float> x_host, embed_calibration(c, ck, seqs));
  // The damping search's fit and validation rows among the calibration tokens [0, Tc).
  const DampSearchPlan plan = plan_damp_search(o.calibration, o.damp_search);
  std::vector<int32_t> fit_rows, val_rows;
  for (size_t t = 0; t < plan.val_mask.size(); ++t)
    (plan.val_mask[t] ? val_rows : fit_rows).push_back(int32_t(t));

  QW_ASSIGN_OR_RETURN(GpuContext ctx, GpuContext::create());
  const cudaStream_t st = ctx.stream();
  QW_ASSIGN_OR_RETURN(DeviceBuffer d_pos,
                      device_array<int32_t>(pos.size(), "calibration positions"));
  QW_RETURN_IF_ERROR(upload(d_pos, pos.data(), pos.size() * 4, st, "calibration positions"));
  QW_ASSIGN_OR_RETURN(DeviceBuffer d_start,
                      device_array<int32_t>(start.size(), "calibration sequence starts"));
  QW_RETURN_IF_ERROR(
      upload(d_start, start.data(), start.size() * 4, st, "calibration sequence starts"));
  QW_ASSIGN_OR_RETURN(DeviceBuffer d_cos, upload_vector(cos_t, st, "RoPE cos table"));
  QW_ASSIGN_OR_RETURN(DeviceBuffer d_sin, upload_vector(sin_t, st, "RoPE sin table"));
  QW_ASSIGN_OR_RETURN(DeviceBuffer x, upload_vector(x_host, st, "calibration hidden states"));
  x_host = {};
  const float attn_scale = 1.0f / std::sqrt(float(hd));
  SearchRows rows;
  DeviceBuffer d_fit, d_val;
  if (plan.enabled) {
    QW_ASSIGN_OR_RETURN(d_fit, device_array<int32_t>(fit_rows.size(), "damping search fit rows"));
    QW_RETURN_IF_ERROR(
        upload(d_fit, fit_rows.data(), fit_rows.size() * 4, st, "damping search fit rows"));
    QW_ASSIGN_OR_RETURN(d_val,
                        device_array<int32_t>(val_rows.size(), "damping search validation rows"));
    QW_RETURN_IF_ERROR(
        upload(d_val, val_rows.data(), val_rows.size() * 4, st, "damping search validation rows"));
    rows = {true, d_fit.as<int32_t>(), d_val.as<int32_t>(), int64_t(fit_rows.size()),
            int64_t(val_rows.size())};
  }

  StageTimes times;
  ProgressBar bar("gptq", uint64_t(c.num_hidden_layers * 7));
  GpuLayerQuantizer lq(ctx, c, ck, o, bar, times, rows);
  std::vector<std::pair<std::string, std::string>> weight_map;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    auto L = [&](const char* s) { return names::layer(l, s); };
    const std::string where = "layer " + std::to_string(l);
    auto fwd = [&](cudaError_t e, const char* step) {
      return check_cuda(e, std::string(step) + " of " + where);
    };
    SafetensorsWriter out;
    const std::string q_b = L("self_attn.q_proj"), k_b = L("self_attn.k_proj"),
                      v_b = L("self_attn.v_proj");
    const std::string o_b = L("self_attn.o_proj"), g_b = L("mlp.gate_proj"), u_b = L("mlp.up_proj");
    const std::string d_b = L("mlp.down_proj");
    QW_ASSIGN_OR_RETURN(auto ln1_host, load_tensor_f32(ck, L(names::kInputNorm), H));
    QW_ASSIGN_OR_RETURN(auto ln2_host, load_tensor_f32(ck, L(names::kPostNorm), H));
    QW_ASSIGN_OR_RETURN(auto bq_host, load_tensor_f32(ck, q_b + ".bias", qd));
    QW_ASSIGN_OR_RETURN(auto bk_host, load_tensor_f32(ck, k_b + ".bias", kvd));
    QW_ASSIGN_OR_RETURN(auto bv_host, load_tensor_f32(ck, v_b + ".bias", kvd));
    QW_ASSIGN_OR_RETURN(DeviceBuffer ln1_w, upload_vector(ln1_host, st, L(names::kInputNorm)));
    QW_ASSIGN_OR_RETURN(DeviceBuffer ln2_w, upload_vector(ln2_host, st, L(names::kPostNorm)));
    QW_ASSIGN_OR_RETURN(DeviceBuffer bq, upload_vector(bq_host, st, q_b + ".bias"));
    QW_ASSIGN_OR_RETURN(DeviceBuffer bk, upload_vector(bk_host, st, k_b + ".bias"));
    QW_ASSIGN_OR_RETURN(DeviceBuffer bv, upload_vector(bv_host, st, v_b + ".bias"));
    QW_ASSIGN_OR_RETURN(DeviceBuffer ln,
                        device_array<float>(size_t(T * H), "normed hidden states of " + where));

    // Attention: q/k/v from the input norm, o from the attention output.
    DeviceBuffer attn;
    {
      {
        StageTimer t(ctx, times.forward);
        QW_RETURN_IF_ERROR(fwd(launch_rms_norm(x.as<float>(), ln1_w.as<float>(), T, H,
                                               c.rms_norm_eps, ln.as<float>(), st),
                               "input RMSNorm"));
      }
      DeviceBuffer wq, wk, wv;
      {
        QW_ASSIGN_OR_RETURN(auto in,
                            lq.inputs(ln.as<float>(), Tc, T, H, where + " attention input"));
        QW_ASSIGN_OR_RETURN(auto w3,
                            lq.quantize_group({{q_b, qd}, {k_b, kvd}, {v_b, kvd}}, in, out, l));
        wq = std::move(w3[0]);
        wk = std::move(w3[1]);
        wv = std::move(w3[2]);
      }
      DeviceBuffer q, k, v;
      QW_RETURN_IF_ERROR(lq.linear(ln.as<float>(), T, wq, qd, H, bq.as<float>(), q, q_b));
      QW_RETURN_IF_ERROR(lq.linear(ln.as<float>(), T, wk, kvd, H, bk.as<float>(), k, k_b));
      QW_RETURN_IF_ERROR(lq.linear(ln.as<float>(), T, wv, kvd, H, bv.as<float>(), v, v_b));
      StageTimer t(ctx, times.forward);
      QW_RETURN_IF_ERROR(fwd(launch_rope(q.as<float>(), T, nq, hd, d_pos.as<int32_t>(),
                                         d_cos.as<float>(), d_sin.as<float>(), st),
                             "RoPE (q)"));
      QW_RETURN_IF_ERROR(fwd(launch_rope(k.as<float>(), T, nkv, hd, d_pos.as<int32_t>(),
                                         d_cos.as<float>(), d_sin.as<float>(), st),
                             "RoPE (k)"));
      QW_ASSIGN_OR_RETURN(attn,
                          device_array<float>(size_t(T * qd), "attention output of " + where));
      QW_RETURN_IF_ERROR(
          fwd(launch_attention(q.as<float>(), k.as<float>(), v.as<float>(), T, nq, nkv, hd,
                               d_start.as<int32_t>(), max_len, attn_scale, attn.as<float>(), st),
              "attention"));
    }
    {
      DeviceBuffer wo;
      {
        QW_ASSIGN_OR_RETURN(auto in,
                            lq.inputs(attn.as<float>(), Tc, T, qd, where + " o_proj input"));
        QW_ASSIGN_OR_RETURN(auto w1, lq.quantize_group({{o_b, H}}, in, out, l));
        wo = std::move(w1[0]);
      }
      DeviceBuffer ao;
      QW_RETURN_IF_ERROR(lq.linear(attn.as<float>(), T, wo, H, qd, nullptr, ao, o_b));
      attn.reset();
      StageTimer t(ctx, times.forward);
      QW_RETURN_IF_ERROR(
          fwd(launch_add(x.as<float>(), ao.as<float>(), T * H, st), "attention residual"));
      QW_RETURN_IF_ERROR(fwd(launch_rms_norm(x.as<float>(), ln2_w.as<float>(), T, H, c.rms_norm_eps,
                                             ln.as<float>(), st),
                             "post-attention RMSNorm"));
    }
    // MLP: gate/up from the post-attention norm, down from SiLU(gate) * up.
    {
      DeviceBuffer wg, wu;
      {
        QW_ASSIGN_OR_RETURN(auto in, lq.inputs(ln.as<float>(), Tc, T, H, where + " MLP input"));
        QW_ASSIGN_OR_RETURN(auto w2, lq.quantize_group({{g_b, I}, {u_b, I}}, in, out, l));
        wg = std::move(w2[0]);
        wu = std::move(w2[1]);
      }
      DeviceBuffer g, u;
      QW_RETURN_IF_ERROR(lq.linear(ln.as<float>(), T, wg, I, H, nullptr, g, g_b));
      QW_RETURN_IF_ERROR(lq.linear(ln.as<float>(), T, wu, I, H, nullptr, u, u_b));
      wg.reset();
      wu.reset();
      {
        StageTimer t(ctx, times.forward);
        QW_RETURN_IF_ERROR(
            fwd(launch_silu_mul(g.as<float>(), u.as<float>(), T * I, st), "SiLU * up"));
      }
      u.reset();
      DeviceBuffer wd;
      {
        QW_ASSIGN_OR_RETURN(auto in,
                            lq.inputs(g.as<float>(), Tc, T, I, where + " down_proj input"));
        QW_ASSIGN_OR_RETURN(auto w1, lq.quantize_group({{d_b, H}}, in, out, l));
        wd = std::move(w1[0]);
      }
      DeviceBuffer dn;
      QW_RETURN_IF_ERROR(lq.linear(g.as<float>(), T, wd, H, I, nullptr, dn, d_b));
      StageTimer t(ctx, times.forward);
      QW_RETURN_IF_ERROR(fwd(launch_add(x.as<float>(), dn.as<float>(), T * H, st), "MLP residual"));
    }
    {
      StageTimer t(ctx, times.write);
      const std::string file = gptq_layer_file(l);
      QW_RETURN_IF_ERROR(out.write((fs::path(o.out_dir) / file).string()));
      for (const auto& n : out.names()) weight_map.emplace_back(n, file);
    }
  }
  QW_RETURN_IF_ERROR(ctx.sync("the calibration forward"));
  bar.finish();
  QW_RETURN_IF_ERROR(write_safetensors_index(o.out_dir, weight_map));
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  // The search and quality stages only appear when they ran, so the line is unchanged without.
  char search[128] = "", quality[64] = "";
  if (plan.enabled)
    std::snprintf(search, sizeof search,
                  ", damping search %.1f s (%lld fit / %lld validation tokens)", times.search,
                  (long long)fit_rows.size(), (long long)val_rows.size());
  if (o.quality)
    std::snprintf(quality, sizeof quality, ", quality report %.1f s (%lld held-out tokens)",
                  times.quality, (long long)(T - Tc));
  std::fprintf(stderr,
               "qwc: GPTQ on the GPU: %lld layers, %lld calibration tokens in %.1f s: load %.1f s, "
               "forward %.1f s, "
               "Hessians %.1f s, Cholesky %.1f s, GPTQ solve %.1f s%s, pack+write %.1f s%s\n",
               (long long)c.num_hidden_layers, (long long)Tc, total, times.load, times.forward,
               times.hessian, times.factor, times.solve, search, times.write, quality);
  return quantized_model_config(o);
}

}  // namespace qw::gptq::gpu

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
  double load = 0, forward = 0, hessian = 0, factor = 0, solve = 0, write = 0, quality = 0;
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

class GpuLayerQuantizer {
 public:
  GpuLayerQuantizer(const GpuContext& ctx, const ModelConfig& c, const Checkpoint& ck,
                    const ModelQuantizeOptions& o, ProgressBar& bar, StageTimes& times)
      : ctx_(ctx), c_(c), ck_(ck), o_(o), bar_(bar), times_(times) {}

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
  // calibration rows [0, Tc) and, with a quality report, the Hessian of its held-out rows
  // [Tc, T) (else an empty buffer).
  struct Inputs {
    GptqFactor f;
    DeviceBuffer held;
  };
  Expected<Inputs> inputs(const float* x, int64_t Tc, int64_t T, int64_t k,
                          const std::string& what) {
    Inputs in;
    QW_ASSIGN_OR_RETURN(in.f, factor(x, Tc, k, what));
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
      StageTimer t(ctx_, times_.quality);
      // RTN on the host (a per-element rounding), measured against the same held-out Hessian.
      Expected<std::vector<float>> rtn_host = rtn_dequantized(host.data(), n, k, o_.settings);
      if (!rtn_host.ok()) return rtn_host.status().context("tensor " + name + " (RTN)");
      host = {};
      QW_ASSIGN_OR_RETURN(DeviceBuffer rtn,
                          upload_vector(*rtn_host, ctx_.stream(), "RTN of tensor " + name));
      QW_ASSIGN_OR_RETURN(HeldoutErrors e,
                          heldout_errors_gpu(ctx_, held, k, w.as<float>(), deq.as<float>(),
                                             rtn.as<float>(), n, "tensor " + name));
      o_.quality->push_back({layer, linear_short_name(base), e});
    }
    bar_.advance(1);
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

  StageTimes times;
  ProgressBar bar("gptq", uint64_t(c.num_hidden_layers * 7));
  GpuLayerQuantizer lq(ctx, c, ck, o, bar, times);
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
        QW_ASSIGN_OR_RETURN(wq, lq.quantize(q_b, qd, H, in, out, l));
        QW_ASSIGN_OR_RETURN(wk, lq.quantize(k_b, kvd, H, in, out, l));
        QW_ASSIGN_OR_RETURN(wv, lq.quantize(v_b, kvd, H, in, out, l));
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
        QW_ASSIGN_OR_RETURN(wo, lq.quantize(o_b, H, qd, in, out, l));
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
        QW_ASSIGN_OR_RETURN(wg, lq.quantize(g_b, I, H, in, out, l));
        QW_ASSIGN_OR_RETURN(wu, lq.quantize(u_b, I, H, in, out, l));
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
        QW_ASSIGN_OR_RETURN(wd, lq.quantize(d_b, H, I, in, out, l));
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
  // The quality stage only appears with a report, so the line is unchanged without one.
  char quality[64] = "";
  if (o.quality)
    std::snprintf(quality, sizeof quality, ", quality report %.1f s (%lld held-out tokens)",
                  times.quality, (long long)(T - Tc));
  std::fprintf(stderr,
               "qwc: GPTQ on the GPU: %lld layers, %lld calibration tokens in %.1f s: load %.1f s, "
               "forward %.1f s, "
               "Hessians %.1f s, Cholesky %.1f s, GPTQ solve %.1f s, pack+write %.1f s%s\n",
               (long long)c.num_hidden_layers, (long long)Tc, total, times.load, times.forward,
               times.hessian, times.factor, times.solve, times.write, quality);
  return quantized_model_config(o);
}

}  // namespace qw::gptq::gpu

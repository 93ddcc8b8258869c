// qwrun bench: startup breakdown (GPU), TTFT, prefill and decode throughput. Prints JSON
// and writes it with --out.
#include <fstream>
#include <iostream>

#include "artifact/tensor_names.h"
#include "cli/commands.h"
#include "cli/model_loader.h"
#include "engine/throughput_bench.h"
#ifdef QW_WITH_GPU
#include "gpu/device_ceilings.h"
#include "gpu/gpu_executor.h"
#include "gpu/startup_bench.h"
#endif

namespace qw::cli {

Runner add_bench_command(CLI::App& app) {
  struct Opts {
    std::string file, out;
    bool startup = false, check_device = false, sweep = false, no_ceilings = false;
    LoadOptions load;
    ThroughputBenchOptions tb;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("bench", "Measure startup, time to first token and tokens/s");
  c->add_option("artifact", o->file, "Compiled model (.qwart)")->required()->check(CLI::ExistingFile);
  c->add_option("--out", o->out, "Also write the JSON here");
  c->add_flag("--startup", o->startup,
              "GPU startup breakdown: process start -> CUDA context, mmap, metadata check, H2D "
              "copy (GB/s), module load, KV/graphs, total; plus the warm and cold floors");
  c->add_flag("--check-device", o->check_device,
              "With --startup: checksum the weights in GPU memory against the file");
  c->add_flag("--sweep-load-methods", o->sweep, "With --startup: time every weight-load method");
  c->add_option("--tp", o->load.tp,
                "GPUs for tensor parallelism; must equal the artifact's degree (qwc compile --tp N), "
                "which is the default. Ranks use GPUs 0..N-1 and need NCCL (libnccl.so.2)")
      ->check(CLI::Range(1, 64));
  c->add_option("--device", o->load.device, "auto | cpu | gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))->capture_default_str();
  c->add_option("--threads", o->load.threads, "CPU threads (0 = all cores)");
  c->add_option("--kv-cache-gb", o->load.kv_cache_gb, "GPU KV cache size (0 = backend default)");
  c->add_option("--prompt-lengths", o->tb.prompt_lengths, "TTFT prompt lengths")->capture_default_str();
  c->add_option("--prefix-reuse", o->tb.prefix_reuse_fractions,
                "TTFT of the longest prompt when this fraction of it is already in the prefix "
                "cache (fractions outside (0, 1) are skipped: --prefix-reuse 0 skips it)")
      ->capture_default_str();
  c->add_option("--batch-sizes", o->tb.batch_sizes, "Decode batch sizes")->capture_default_str();
  c->add_option("--decode-steps", o->tb.decode_steps, "Timed decode steps per batch size")
      ->capture_default_str();
  c->add_option("--decode-context", o->tb.decode_context, "Prompt length before the decode steps")
      ->capture_default_str();
  c->add_flag("--no-ceilings", o->no_ceilings,
              "GPU: skip measuring the copy bandwidth and cuBLAS rate (and the floors from them)");
  return [o] {
    nlohmann::ordered_json result;
    if (o->startup) {
#ifdef QW_WITH_GPU
      gpu::StartupBenchOptions so;
      so.check_device = o->check_device;
      so.sweep_methods = o->sweep;
      if (o->load.kv_cache_gb > 0) so.kv_cache_gb = o->load.kv_cache_gb;
      auto r = gpu::run_startup_bench(o->file, so);
      if (!r.ok()) return fail(r.status().message());
      result = nlohmann::ordered_json::parse(r->dump());
#else
      return fail("--startup needs the GPU runtime (this qwrun was built without CUDA)");
#endif
    } else {
      auto m = load_model(o->file, o->load);
      if (!m.ok()) return fail(m.status().message());
      auto r = run_throughput_bench(*(*m)->executor, o->tb);
      if (!r.ok()) return fail(r.status().message());
      result = *r;
      result["artifact"] = o->file;
      result["load_seconds"] = (*m)->load_seconds;
      result["weight_bytes"] = (*m)->artifact->file().size();
      result["decode_context"] = o->tb.decode_context;
      result["decode_steps"] = o->tb.decode_steps;
#ifdef QW_WITH_GPU
      if (auto* g = dynamic_cast<gpu::GpuExecutor*>((*m)->executor.get())) {
        const gpu::GpuMemoryUse mu = g->memory_use();
        result["gpu_memory"] = {{"weights_bytes", mu.weights},
                                {"kv_cache_bytes", mu.kv_cache},
                                {"workspace_bytes", mu.workspace},
                                {"device_used_bytes", mu.device_used},
                                {"device_total_bytes", mu.device_total}};
        // GPU time of one decode step (graph replay, context 1) vs the host-visible step.
        for (int b : g->graph_buckets()) {
          auto ms = g->time_graph_replay(b, 20);
          if (!ms.ok()) return fail(ms.status().message());
          result["graph_replay_ms"][std::to_string(b)] = *ms;
        }
        if (!o->no_ceilings) {
          const ModelConfig& cfg = g->config();
          const bool bf16 = (*m)->artifact->weight_dtype() == DType::BF16;
          auto ce = gpu::measure_device_ceilings(0, bf16, 2048, 2 * cfg.intermediate_size, cfg.hidden_size);
          if (!ce.ok()) return fail(ce.status().message());
          result["ceilings"] = {{"d2d_copy_gbps", ce->d2d_gbps},
                                {"d2d_copy_bytes", ce->d2d_bytes},
                                {"cublas_gemm_8192_tflops", ce->gemm_tflops},
                                {"cublas_gate_up_shape", {ce->shape_m, ce->shape_n, ce->shape_k}},
                                {"cublas_gate_up_tflops", ce->shape_tflops}};
          // The floor counts the bytes as stored: INT4 matrices read 0.5 byte per weight + scales.
          double stored = 0;
          for (const TensorView& t : (*m)->artifact->tensors())
            if (t.tp_rank == 0 && (t.name != names::kEmbed || cfg.tie_word_embeddings))
              stored += double(t.size);
          add_throughput_floors(result, cfg, 2.0, o->tb, ce->d2d_gbps, ce->gemm_tflops, stored);
        }
      }
#endif
    }
    std::cout << result.dump(2) << std::endl;
    if (!o->out.empty()) {
      std::ofstream f(o->out);
      if (!(f << result.dump(2) << "\n")) return fail(o->out + ": cannot write");
    }
    return 0;
  };
}

}  // namespace qw::cli

// qwrun bench: startup breakdown (GPU), TTFT, prefill and decode throughput. Prints JSON
// and writes it with --out.
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cli/model_loader.h"
#include "engine/throughput_bench.h"
#ifdef QW_WITH_GPU
#include "gpu/startup_bench.h"
#endif

namespace qw::cli {

Runner add_bench_command(CLI::App& app) {
  struct Opts {
    std::string file, out;
    bool startup = false, check_device = false, sweep = false;
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
  c->add_option("--device", o->load.device, "auto | cpu | gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))->capture_default_str();
  c->add_option("--threads", o->load.threads, "CPU threads (0 = all cores)");
  c->add_option("--kv-cache-gb", o->load.kv_cache_gb, "GPU KV cache size (0 = backend default)");
  c->add_option("--prompt-lengths", o->tb.prompt_lengths, "TTFT prompt lengths")->capture_default_str();
  c->add_option("--batch-sizes", o->tb.batch_sizes, "Decode batch sizes")->capture_default_str();
  c->add_option("--decode-steps", o->tb.decode_steps, "Timed decode steps per batch size")
      ->capture_default_str();
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

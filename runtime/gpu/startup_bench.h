// `qwrun bench FILE --startup`: times every stage from process start to a ready GPU
// executor, plus the floors (artifact bytes / pinned H2D bandwidth; file bytes / disk
// bandwidth read with O_DIRECT), and returns them as JSON.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"
#include "gpu/weight_loader.h"

namespace qw::gpu {

struct StartupBenchOptions {
  int device = 0;
  bool verify_checksums = false;  // full XXH3 of every section before loading (reads the file)
  bool check_device = false;      // GPU checksum of the weights in device memory vs the file
  bool executor = true;           // ready = GpuExecutor built (KV pool, graphs); else weights + kernels
  double kv_cache_gb = 4;         // KV pool for the executor in this benchmark
  bool cuda_graphs = true;
  LoadOptions load;
  bool sweep_methods = false;     // afterwards, time every load method once more
  bool measure_floors = true;
};

// Seconds since this process started (from /proc/self/stat; 10 ms resolution), or -1.
double seconds_since_process_start();

Expected<nlohmann::json> run_startup_bench(const std::string& artifact_path, const StartupBenchOptions& opts);

}  // namespace qw::gpu

#include "gpu/startup_bench.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "artifact/artifact.h"
#include "gpu/gpu_executor.h"

namespace qw::gpu {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Pinned host -> device bandwidth of one large copy (best of 3), GB/s.
Expected<double> pinned_h2d_gbps(size_t bytes) {
  QW_ASSIGN_OR_RETURN(PinnedBuffer h, PinnedBuffer::alloc(bytes));
  std::memset(h.get(), 0x5a, bytes);
  QW_ASSIGN_OR_RETURN(DeviceBuffer d, DeviceBuffer::alloc(bytes, "the H2D bandwidth probe"));
  double best = 1e30;
  for (int i = 0; i < 4; ++i) {
    const double t = now_s();
    QW_CUDA(cudaMemcpy(d.get(), h.get(), bytes, cudaMemcpyHostToDevice));
    if (i > 0) best = std::min(best, now_s() - t);
  }
  return double(bytes) / best / 1e9;
}

// O_DIRECT read bandwidth of up to `limit` bytes of the file with 8 threads, GB/s; bypasses
// the page cache, so it measures the disk whether or not the file is cached. -1 if O_DIRECT
// is unsupported there.
double direct_read_gbps(const std::string& path, uint64_t file_size, uint64_t limit) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) return -1;
  const size_t chunk = size_t(16) << 20;
  const uint64_t total = std::min<uint64_t>(file_size & ~uint64_t(chunk - 1), limit);
  if (total == 0) {
    ::close(fd);
    return -1;
  }
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  const double t = now_s();
  std::vector<std::thread> th;
  for (int i = 0; i < 8; ++i)
    th.emplace_back([&] {
      void* buf = nullptr;
      if (posix_memalign(&buf, 4096, chunk) != 0) {
        failed = true;
        return;
      }
      for (;;) {
        const uint64_t off = next.fetch_add(chunk);
        if (off >= total) break;
        if (::pread(fd, buf, chunk, off_t(off)) <= 0) {
          failed = true;
          break;
        }
      }
      free(buf);
    });
  for (auto& x : th) x.join();
  const double dt = now_s() - t;
  ::close(fd);
  return failed ? -1 : double(total) / dt / 1e9;
}

}  // namespace

double seconds_since_process_start() {
  std::ifstream f("/proc/self/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t rp = s.rfind(')');
  if (rp == std::string::npos) return -1;
  std::istringstream is(s.substr(rp + 2));
  std::string field;
  // Fields after the command: state is field 3; starttime is field 22.
  unsigned long long start_ticks = 0;
  for (int i = 3; i <= 22 && (is >> field); ++i)
    if (i == 22) start_ticks = std::stoull(field);
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  const double boot_now = double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
  return boot_now - double(start_ticks) / double(sysconf(_SC_CLK_TCK));
}

Expected<nlohmann::json> run_startup_bench(const std::string& path,
                                           const StartupBenchOptions& opts) {
  using nlohmann::json;
  json out;
  const double since_start = seconds_since_process_start();
  const double t0 = now_s();

  // CUDA context creation overlaps with mapping and checking the file.
  std::atomic<bool> ctx_done{false};
  cudaError_t ctx_err = cudaSuccess;
  double ctx_s = 0;
  std::thread ctx_thread([&] {
    const double t = now_s();
    ctx_err = cudaSetDevice(opts.device);
    if (ctx_err == cudaSuccess) ctx_err = cudaFree(nullptr);
    ctx_s = now_s() - t;
    ctx_done = true;
  });
  double t = now_s();
  auto mapped = MappedFile::open(path);
  const double mmap_s = now_s() - t;
  if (!mapped.ok()) {
    ctx_thread.join();
    return mapped.status();
  }
  t = now_s();
  Artifact::OpenOptions oo;
  oo.verify_checksums = opts.verify_checksums;
  auto art = Artifact::open(path, oo);
  const double meta_s = now_s() - t;
  ctx_thread.join();
  if (!art.ok()) return art.status();
  if (ctx_err != cudaSuccess)
    return cuda_error(ctx_err, "creating the CUDA context", __FILE__, __LINE__);
  QW_CUDA(cudaSetDevice(opts.device));
  size_t free0 = 0, total_mem = 0;
  QW_CUDA(cudaMemGetInfo(&free0, &total_mem));
  auto artifact = std::make_shared<Artifact>(std::move(*art));

  json stages;
  stages["cuda_context_s"] = ctx_s;
  stages["mmap_s"] = mmap_s;
  stages[opts.verify_checksums ? "metadata_and_checksums_s" : "metadata_check_s"] = meta_s;
  std::unique_ptr<GpuExecutor> exec;
  DeviceWeights weights;
  KernelModule module;
  if (opts.executor) {
    GpuExecutorOptions eo;
    eo.device = opts.device;
    eo.kv_cache_gb = opts.kv_cache_gb;
    eo.cuda_graphs = opts.cuda_graphs;
    eo.load = opts.load;
    QW_ASSIGN_OR_RETURN(exec, GpuExecutor::create(artifact, eo));
    const GpuStartupTimings& g = exec->startup();
    stages["weights_alloc_s"] = g.weights_alloc_s;
    stages["weights_h2d_s"] = g.weights_copy_s;
    stages["module_load_s"] = g.module_s;
    stages["workspace_kv_alloc_s"] = g.workspace_s;
    // The copy overlaps module load and workspace/KV allocation: the stages add up to more
    // than the total; weights_wait_s is what the copy added after them.
    stages["weights_wait_s"] = g.weights_wait_s;
    stages["graph_capture_s"] = g.graph_capture_s;
    out["weights"] = {
        {"bytes", g.weight_bytes}, {"h2d_gbps", g.weights_gbps}, {"method", g.load_method}};
    out["kernels"] = {{"source", g.module_source}, {"arch", g.module_arch}};
    out["kv_cache"] = {{"bytes", g.kv_bytes}, {"blocks", g.kv_blocks}, {"graphs", g.graphs}};
  } else {
    QW_ASSIGN_OR_RETURN(weights, load_weights_to_device(*artifact, 0, opts.load));
    stages["weights_alloc_s"] = weights.stats.alloc_seconds;
    stages["weights_h2d_s"] = weights.stats.copy_seconds;
    QW_ASSIGN_OR_RETURN(module, KernelModule::load(*artifact, opts.device));
    stages["module_load_s"] = module.info().seconds;
    out["weights"] = {{"bytes", weights.stats.bytes},
                      {"h2d_gbps", weights.stats.gbps()},
                      {"method", weights.stats.method}};
    out["kernels"] = {{"source", kernel_source_name(module.info().source)},
                      {"arch", module.info().arch}};
  }
  QW_CUDA(cudaDeviceSynchronize());
  const double total = now_s() - t0;
  size_t free1 = 0;
  QW_CUDA(cudaMemGetInfo(&free1, &total_mem));
  cudaDeviceProp prop{};
  QW_CUDA(cudaGetDeviceProperties(&prop, opts.device));

  out["artifact"] = path;
  out["file_bytes"] = artifact->file().size();
  out["device"] = prop.name;
  out["stages"] = stages;
  out["total_to_ready_s"] = total;
  out["process_start_to_call_s"] = since_start;
  out["process_start_to_ready_s"] = since_start >= 0 ? since_start + total : -1.0;
  out["gpu_memory"] = {{"used_bytes", uint64_t(free0 - free1)},
                       {"total_bytes", uint64_t(total_mem)}};

  const uint64_t wbytes = out["weights"]["bytes"].get<uint64_t>();
  if (opts.check_device) {
    // GPU checksum of the arena vs the same function over the file's bytes.
    uint64_t dev = 0;
    if (exec) {
      QW_ASSIGN_OR_RETURN(dev, exec->device_weights_checksum());
    }
    QW_ASSIGN_OR_RETURN(SectionView sec, artifact->weights_section(0));
    const double tc = now_s();
    const uint64_t host = host_checksum64(sec.data, sec.size, 16);
    out["device_check"] = {{"device_checksum", dev},
                           {"file_checksum", host},
                           {"equal", exec && dev == host},
                           {"host_seconds", now_s() - tc}};
  }
  if (opts.measure_floors) {
    QW_ASSIGN_OR_RETURN(double h2d, pinned_h2d_gbps(size_t(1) << 30));
    const double disk = direct_read_gbps(path, artifact->file().size(), uint64_t(8) << 30);
    json f;
    f["pinned_h2d_gbps"] = h2d;
    f["warm_floor_s"] = double(wbytes) / (h2d * 1e9);
    f["disk_direct_read_gbps"] = disk;
    f["cold_floor_s"] = disk > 0 ? double(artifact->file().size()) / (disk * 1e9) : -1.0;
    out["floors"] = f;
  }
  if (opts.sweep_methods) {
    json sweep = json::array();
    exec.reset();
    weights = DeviceWeights{};
    // host-register and plain are slow on large files (time them alone with --method).
    for (LoadMethod m : {LoadMethod::Staged, LoadMethod::StagedMmap}) {
      for (int threads : {4, 8, 16}) {
        LoadOptions lo = opts.load;
        lo.method = m;
        lo.threads = threads;
        auto w = load_weights_to_device(*artifact, 0, lo);
        json r = {{"method", load_method_name(m)}, {"threads", threads}};
        if (w.ok()) {
          r["alloc_s"] = w->stats.alloc_seconds;
          r["copy_s"] = w->stats.copy_seconds;
          r["gbps"] = w->stats.gbps();
        } else {
          r["error"] = w.status().message();
        }
        sweep.push_back(r);
      }
    }
    out["method_sweep"] = sweep;
  }
  return out;
}

}  // namespace qw::gpu

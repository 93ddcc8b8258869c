#include "cli/model_loader.h"

#include <chrono>

#include "artifact/tensor_names.h"
#include "cpu/cpu_executor.h"
#ifdef QW_WITH_GPU
#include <cuda_runtime.h>

#include "gpu/gpu_executor.h"
#include "gpu/tp_executor.h"
#endif

namespace qw {

Expected<Tokenizer> load_tokenizer(const Artifact& artifact) {
  QW_ASSIGN_OR_RETURN(std::vector<uint8_t> blob, artifact.section_payload(fb::SectionKind::Tokenizer));
  if (blob.empty())
    return Status::Error(artifact.path() +
                         ": has no tokenizer section (the checkpoint had no tokenizer.json when "
                         "it was compiled)");
  auto t = Tokenizer::from_blob(blob);
  if (!t.ok()) return t.status().context(artifact.path() + ": tokenizer section");
  return t;
}

Expected<std::unique_ptr<LoadedModel>> load_model(const std::string& path, const LoadOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  Artifact::OpenOptions ao;
  ao.verify_checksums = o.verify;
  QW_ASSIGN_OR_RETURN(Artifact art, Artifact::open(path, ao));
  QW_ASSIGN_OR_RETURN(Tokenizer tok, load_tokenizer(art));
  auto m = std::unique_ptr<LoadedModel>(new LoadedModel{
      std::make_shared<const Artifact>(std::move(art)), std::move(tok), nullptr, 0});
  const int art_tp = m->artifact->tp_size();
  if (o.tp > 0 && o.tp != art_tp)
    return Errorf("--tp %d: %s was compiled for tensor parallelism %d (recompile with qwc compile --tp %d)", o.tp,
                  path.c_str(), art_tp, o.tp);
  std::string device = o.device;
#ifdef QW_WITH_GPU
  if (device == "auto") {
    int n = 0;
    device = cudaGetDeviceCount(&n) == cudaSuccess && n > 0 ? "gpu" : "cpu";
  }
  if (device == "gpu") {
    gpu::GpuExecutorOptions go;
    go.kv_cache_gb = o.kv_cache_gb;
    go.prefix_caching = o.prefix_caching;
    go.device_sampling = o.device_sampling;
    if (art_tp > 1) {
      QW_ASSIGN_OR_RETURN(auto exec, gpu::TpGpuExecutor::create(m->artifact, go));
      m->executor = std::move(exec);
    } else {
      QW_ASSIGN_OR_RETURN(auto exec, gpu::GpuExecutor::create(m->artifact, go));
      m->executor = std::move(exec);
    }
  }
#else
  if (device == "auto") device = "cpu";
  if (device == "gpu") return Status::Error("this qwrun was built without the GPU runtime");
#endif
  if (device == "cpu") {
    cpu::CpuExecutorOptions co;
    co.threads = o.threads;
    co.prefix_caching = o.prefix_caching;
    co.reduce_rows_on_host = o.reduce_rows_on_host;
    QW_ASSIGN_OR_RETURN(auto exec, cpu::CpuExecutor::create(*m->artifact, co));
    m->executor = std::move(exec);
  }
  if (!m->executor) return Status::Error("unknown device \"" + o.device + "\" (auto, cpu, gpu)");
  m->load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

}  // namespace qw

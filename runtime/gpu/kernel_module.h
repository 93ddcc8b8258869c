// Loads the model's kernel module for the current device: the artifact's cubin for the
// device's compute capability, else its PTX through the driver's JIT, else NVRTC at run
// time (templates embedded in this binary) with an on-disk cache. Says which it used.
#pragma once
#include <cuda_runtime.h>

#include <map>
#include <string>
#include <vector>

#include "compiler/kernel_compiler.h"
#include "core/status.h"
#include "gpu/cuda_util.h"

namespace qw {
class Artifact;
}

namespace qw::gpu {

enum class KernelSourceKind { Cubin, Ptx, Nvrtc, NvrtcCache };
const char* kernel_source_name(KernelSourceKind k);

struct KernelLoadInfo {
  KernelSourceKind source = KernelSourceKind::Cubin;
  std::string arch;       // image arch used (or compiled for)
  std::string key;
  std::string cache_path; // NVRTC cache file, when used
  double seconds = 0;     // decompress + select + load (+ compile)
};

// Index of the best image for a device of compute capability cc (e.g. 90), or -1.
// Preference: cubin for exactly cc; cubin of the same major built for a lower minor (not
// arch-specific); PTX for cc or lower (not arch-specific unless exactly cc).
int select_kernel_image(const std::vector<KernelImageInfo>& images, int cc);

class KernelModule {
 public:
  KernelModule() = default;
  ~KernelModule();
  KernelModule(const KernelModule&) = delete;
  KernelModule& operator=(const KernelModule&) = delete;
  KernelModule(KernelModule&& o) noexcept;
  KernelModule& operator=(KernelModule&& o) noexcept;

  // Environment: QW_KERNEL_SOURCE=cubin|ptx|nvrtc forces a path (tests); QW_KERNEL_CACHE
  // names the cache directory (default $XDG_CACHE_HOME/qwrun/kernels or ~/.cache/...).
  static Expected<KernelModule> load(const Artifact& artifact, int device);
  // Without an artifact: compile for the device with NVRTC (cached). For tests and tools.
  // int4: the INT4 kernels' constants (INT4 artifacts), else null.
  static Expected<KernelModule> compile_for_device(const ModelConfig& config, const TpPlan& plan,
                                                   DType weight_dtype, int device,
                                                   const Int4KernelConstants* int4 = nullptr);
  // From given images (blob = uncompressed Kernels section); the NVRTC fallback compiles
  // kernel_source(config, plan, weight_dtype, int4).
  static Expected<KernelModule> load_images(const std::vector<KernelImageInfo>& images,
                                            const std::vector<uint8_t>& blob, const ModelConfig& config,
                                            const TpPlan& plan, DType weight_dtype, int device,
                                            const Int4KernelConstants* int4 = nullptr);

  Expected<cudaKernel_t> get(const std::string& name) const;
  const KernelLoadInfo& info() const { return info_; }

 private:
  static Expected<KernelModule> from_data(const void* data, KernelLoadInfo info);
  cudaLibrary_t lib_ = nullptr;
  KernelLoadInfo info_;
  mutable std::map<std::string, cudaKernel_t> cache_;
};

// Launches a kernel with by-value arguments.
template <typename... Args>
Status launch(cudaKernel_t k, dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args... args) {
  void* argv[sizeof...(Args) > 0 ? sizeof...(Args) : 1] = {static_cast<void*>(&args)...};
  cudaError_t e = cudaLaunchKernel(reinterpret_cast<const void*>(k), grid, block, argv, smem, stream);
  if (e != cudaSuccess) return cuda_error(e, "cudaLaunchKernel", __FILE__, __LINE__);
  return Status::Ok();
}

// Same, optionally as a programmatic dependent launch (the kernel may start while the
// previous kernel in the stream finishes; it orders itself with griddepcontrol.wait).
template <typename... Args>
Status launch_pdl(bool pdl, cudaKernel_t k, dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args... args) {
  if (!pdl) return launch(k, grid, block, smem, stream, args...);
  void* argv[sizeof...(Args) > 0 ? sizeof...(Args) : 1] = {static_cast<void*>(&args)...};
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  cudaError_t e = cudaLaunchKernelExC(&cfg, reinterpret_cast<const void*>(k), argv);
  if (e != cudaSuccess) return cuda_error(e, "cudaLaunchKernelExC", __FILE__, __LINE__);
  return Status::Ok();
}

}  // namespace qw::gpu

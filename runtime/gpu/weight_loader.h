// Artifact -> GPU memory: one device allocation (arena) per GPU holding the rank's whole
// weights section, so a tensor's device address is arena + its offset in the section.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "artifact/artifact.h"
#include "core/status.h"
#include "gpu/cuda_util.h"

namespace qw::gpu {

enum class LoadMethod {
  Staged,        // pread into pinned staging buffers on several threads/streams (default)
  StagedMmap,    // same, but memcpy from the mapping instead of pread
  HostRegister,  // cudaHostRegister the mapped section, then async copies
  Plain,         // one cudaMemcpy from the (pageable) mapping
};
const char* load_method_name(LoadMethod m);
bool parse_load_method(const std::string& s, LoadMethod* m);

struct LoadOptions {
  LoadMethod method = LoadMethod::Staged;
  int threads = 8;                        // reader threads = streams
  size_t chunk_bytes = size_t(16) << 20;  // per staging buffer (2 per thread)
  bool direct_io = false;                 // O_DIRECT reads (cold disk, no page cache pollution)
};

struct LoadStats {
  std::string method;
  uint64_t bytes = 0;
  double alloc_seconds = 0;  // cudaMalloc of the arena + staging buffers
  double copy_seconds = 0;   // reading + H2D until the last byte is on the GPU
  double gbps() const { return copy_seconds > 0 ? double(bytes) / copy_seconds / 1e9 : 0; }
};

struct DeviceWeights {
  DeviceBuffer arena;
  uint64_t section_file_offset = 0;  // where the section starts in the file
  int tp_rank = 0;
  LoadStats stats;
  // Device address of a tensor of this rank (TensorView::offset_in_section).
  const void* ptr(const TensorView& t) const {
    return arena.as<const uint8_t>() + t.offset_in_section;
  }
};

// Allocates the arena on the current device and copies the rank's weights section.
// Fails with how much memory is needed and free when the GPU is too small.
Expected<DeviceWeights> load_weights_to_device(const Artifact& artifact, int tp_rank,
                                               const LoadOptions& opts);

// load_weights_to_device in two halves, so that start-up work that does not read the
// weights (kernel module, workspace and KV pool allocation, graph capture) overlaps the copy:
// start() allocates `out`'s arena on the current device (tensor addresses are final at once)
// and copies on a background thread; wait() returns when every byte is on the GPU (or the
// copy failed). The destructor waits too, so `out` must outlive this object.
class PendingWeightLoad {
 public:
  static Expected<PendingWeightLoad> start(const Artifact& artifact, int tp_rank,
                                           const LoadOptions& opts, DeviceWeights& out);
  PendingWeightLoad(PendingWeightLoad&&) noexcept;
  PendingWeightLoad& operator=(PendingWeightLoad&&) = delete;
  ~PendingWeightLoad();
  Status wait();

 private:
  struct State;
  explicit PendingWeightLoad(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

// Order-dependent 64-bit checksum of device bytes (computed on the GPU with the module's
// checksum64 kernel is done by callers); this is the host version of the same function.
uint64_t host_checksum64(const uint8_t* data, uint64_t bytes, unsigned threads);

}  // namespace qw::gpu

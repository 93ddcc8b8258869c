// NCCL, loaded at run time. qwrun links no NCCL: a TP=1 deployment needs none, and NCCL's
// 200 MB library ships with the CUDA toolkit or PyTorch's wheels in varying places. The
// first tensor-parallel run dlopens libnccl.so.2 (LD_LIBRARY_PATH, then the toolkit's lib64)
// and resolves the few calls the runtime makes.
#pragma once
#include <cuda_runtime.h>
#include <nccl.h>

#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace qw::gpu {

struct NcclApi {
  decltype(&::ncclCommInitAll) comm_init_all = nullptr;
  decltype(&::ncclCommDestroy) comm_destroy = nullptr;
  decltype(&::ncclAllReduce) all_reduce = nullptr;
  decltype(&::ncclGetErrorString) error_string = nullptr;
  decltype(&::ncclGetVersion) version = nullptr;
  std::string library;  // the path dlopen took it from
};

// The process-wide NCCL, loaded on first use; an error says where it was looked for.
Expected<const NcclApi*> load_nccl();

// One communicator per GPU of this process (ncclCommInitAll), destroyed together.
class NcclComms {
 public:
  static Expected<NcclComms> create(const std::vector<int>& devices);
  NcclComms() = default;
  NcclComms(NcclComms&& o) noexcept : api_(o.api_), comms_(std::move(o.comms_)) { o.comms_.clear(); }
  NcclComms& operator=(NcclComms&& o) noexcept;
  ~NcclComms();
  ncclComm_t operator[](size_t rank) const { return comms_[rank]; }
  size_t size() const { return comms_.size(); }
  const NcclApi& api() const { return *api_; }

 private:
  const NcclApi* api_ = nullptr;
  std::vector<ncclComm_t> comms_;
};

}  // namespace qw::gpu

#define QW_NCCL(api, expr)                                                                      \
  do {                                                                                          \
    ncclResult_t _qw_nr = (expr);                                                               \
    if (_qw_nr != ncclSuccess)                                                                  \
      return ::qw::Errorf("NCCL error %d (%s) in %s at %s:%d", int(_qw_nr),                     \
                          (api).error_string(_qw_nr), #expr, __FILE__, __LINE__);               \
  } while (0)

#include "gpu/nccl_api.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace qw::gpu {

namespace {

Expected<NcclApi> open_nccl() {
  std::vector<std::string> tried;
  void* lib = nullptr;
  for (const char* name : {"libnccl.so.2", "libnccl.so", "/usr/local/cuda/lib64/libnccl.so.2"}) {
    lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    tried.emplace_back(name);
    if (lib) {
      NcclApi api;
      api.library = name;
      auto sym = [&](auto& fn, const char* s) {
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, s));
        return fn != nullptr;
      };
      if (!sym(api.comm_init_all, "ncclCommInitAll") || !sym(api.comm_destroy, "ncclCommDestroy") ||
          !sym(api.all_reduce, "ncclAllReduce") || !sym(api.error_string, "ncclGetErrorString") ||
          !sym(api.version, "ncclGetVersion"))
        return Status::Error(std::string(name) + ": not a usable NCCL (a symbol is missing)");
      return api;
    }
  }
  std::string list;
  for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t;
  return Status::Error("tensor parallelism needs NCCL, and none was found (tried " + list +
                       "; add its folder to LD_LIBRARY_PATH)");
}

}  // namespace

Expected<const NcclApi*> load_nccl() {
  static std::once_flag once;
  static Expected<NcclApi> api = Status::Error("NCCL not loaded");
  std::call_once(once, [] {
    // Multicast (NVLink SHARP) objects can wedge shared GPUs; never let NCCL create them.
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    api = open_nccl();
  });
  if (!api.ok()) return api.status();
  return &api.value();
}

Expected<NcclComms> NcclComms::create(const std::vector<int>& devices) {
  QW_ASSIGN_OR_RETURN(const NcclApi* api, load_nccl());
  NcclComms c;
  c.api_ = api;
  c.comms_.resize(devices.size(), nullptr);
  QW_NCCL(*api, api->comm_init_all(c.comms_.data(), int(devices.size()), devices.data()));
  return c;
}

NcclComms& NcclComms::operator=(NcclComms&& o) noexcept {
  if (this != &o) {
    this->~NcclComms();
    api_ = o.api_;
    comms_ = std::move(o.comms_);
    o.comms_.clear();
  }
  return *this;
}

NcclComms::~NcclComms() {
  for (ncclComm_t c : comms_)
    if (c) api_->comm_destroy(c);
  comms_.clear();
}

}  // namespace qw::gpu

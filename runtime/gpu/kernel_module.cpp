#include "gpu/kernel_module.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "artifact/artifact.h"
#include "quant/int4_artifact.h"

namespace qw::gpu {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string cache_dir() {
  if (const char* d = std::getenv("QW_KERNEL_CACHE"); d && *d) return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return std::string(d) + "/qwrun/kernels";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/qwrun/kernels";
  return "/tmp/qwrun-kernels";
}

void mkdirs(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i)
    if (i == path.size() || path[i] == '/') ::mkdir(path.substr(0, i).c_str(), 0755);
}

Expected<int> device_cc(int device) {
  int major = 0, minor = 0;
  QW_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  QW_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor;
}

std::string nvrtc_arch_for(int cc) {
  // Hopper gets its arch-specific target (wgmma etc. usable); others the plain one.
  return "sm_" + std::to_string(cc) + (cc == 90 ? "a" : "");
}

}  // namespace

const char* kernel_source_name(KernelSourceKind k) {
  switch (k) {
    case KernelSourceKind::Cubin: return "cubin";
    case KernelSourceKind::Ptx: return "ptx-jit";
    case KernelSourceKind::Nvrtc: return "nvrtc";
    case KernelSourceKind::NvrtcCache: return "nvrtc-cache";
  }
  return "?";
}

int select_kernel_image(const std::vector<KernelImageInfo>& images, int cc) {
  int best = -1, best_rank = -1;
  for (size_t i = 0; i < images.size(); ++i) {
    int icc = 0;
    bool specific = false, ptx = false;
    if (!parse_arch(images[i].arch, &icc, &specific, &ptx)) continue;
    if (ptx != (images[i].format == "ptx")) continue;
    int rank = -1;
    if (!ptx) {
      if (icc == cc) rank = 3000;
      else if (!specific && icc / 10 == cc / 10 && icc < cc) rank = 2000 + icc;
    } else {
      if (icc == cc || (!specific && icc < cc)) rank = 1000 + icc;
    }
    if (rank > best_rank) {
      best_rank = rank;
      best = int(i);
    }
  }
  return best;
}

KernelModule::~KernelModule() {
  if (lib_) cudaLibraryUnload(lib_);
}
KernelModule::KernelModule(KernelModule&& o) noexcept
    : lib_(std::exchange(o.lib_, nullptr)), info_(std::move(o.info_)), cache_(std::move(o.cache_)) {}
KernelModule& KernelModule::operator=(KernelModule&& o) noexcept {
  if (this != &o) {
    if (lib_) cudaLibraryUnload(lib_);
    lib_ = std::exchange(o.lib_, nullptr);
    info_ = std::move(o.info_);
    cache_ = std::move(o.cache_);
  }
  return *this;
}

Expected<KernelModule> KernelModule::from_data(const void* data, KernelLoadInfo info) {
  KernelModule m;
  cudaError_t e = cudaLibraryLoadData(&m.lib_, data, nullptr, nullptr, 0, nullptr, nullptr, 0);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return Status::Error(std::string("loading the kernel module (") + kernel_source_name(info.source) +
                         ", " + info.arch + ") failed: " + cudaGetErrorName(e) + " " + cudaGetErrorString(e));
  }
  m.info_ = std::move(info);
  return m;
}

Expected<KernelModule> KernelModule::load_images(const std::vector<KernelImageInfo>& images,
                                                 const std::vector<uint8_t>& blob, const ModelConfig& config,
                                                 const TpPlan& plan, DType weight_dtype, int device,
                                                 const Int4KernelConstants* int4) {
  const double t0 = now_s();
  QW_ASSIGN_OR_RETURN(int cc, device_cc(device));
  std::string force;
  if (const char* f = std::getenv("QW_KERNEL_SOURCE")) force = f;
  std::vector<KernelImageInfo> usable;
  for (const auto& im : images) {
    if (im.offset > blob.size() || im.size > blob.size() - im.offset) continue;
    if (force == "ptx" && im.format != "ptx") continue;
    if (force == "cubin" && im.format != "cubin") continue;
    if (force == "nvrtc") continue;
    usable.push_back(im);
  }
  const int idx = select_kernel_image(usable, cc);
  if (idx >= 0) {
    const KernelImageInfo& im = usable[size_t(idx)];
    KernelLoadInfo info;
    info.source = im.format == "ptx" ? KernelSourceKind::Ptx : KernelSourceKind::Cubin;
    info.arch = im.arch;
    info.key = im.key;
    // PTX must be NUL-terminated for the JIT; cubins are loaded in place.
    std::vector<uint8_t> ptx;
    const void* data = blob.data() + im.offset;
    if (info.source == KernelSourceKind::Ptx) {
      ptx.assign(blob.begin() + long(im.offset), blob.begin() + long(im.offset + im.size));
      ptx.push_back(0);
      data = ptx.data();
    }
    auto m = from_data(data, info);
    if (m.ok()) {
      m->info_.seconds = now_s() - t0;
      return m;
    }
    if (force == "cubin" || force == "ptx") return m.status();
    std::fprintf(stderr, "qwrun: %s; falling back to NVRTC\n", m.status().message().c_str());
  } else if (force == "cubin" || force == "ptx") {
    return Status::Error("kernels: no " + force + " image in the artifact fits compute capability " +
                         std::to_string(cc));
  }
  // NVRTC at run time, cached on disk by key.
  const std::string arch = nvrtc_arch_for(cc);
  const std::string source = kernel_source(config, plan, weight_dtype, int4);
  KernelLoadInfo info;
  info.arch = arch;
  info.key = kernel_key(source, arch, "cubin");
  const std::string dir = cache_dir();
  info.cache_path = dir + "/" + info.key + "-" + arch + ".cubin";
  {
    std::ifstream in(info.cache_path, std::ios::binary);
    if (in) {
      std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      info.source = KernelSourceKind::NvrtcCache;
      auto m = from_data(bytes.data(), info);
      if (m.ok()) {
        m->info_.seconds = now_s() - t0;
        return m;
      }
      std::fprintf(stderr, "qwrun: cached kernels %s unusable (%s); recompiling\n", info.cache_path.c_str(),
                   m.status().message().c_str());
    }
  }
  QW_ASSIGN_OR_RETURN(auto cubin, nvrtc_compile(source, arch));
  mkdirs(dir);
  const std::string tmp = info.cache_path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(reinterpret_cast<const char*>(cubin.data()), std::streamsize(cubin.size()));
    if (out.good()) {
      out.close();
      std::rename(tmp.c_str(), info.cache_path.c_str());
    } else {
      std::remove(tmp.c_str());
      info.cache_path.clear();  // cache not writable: still usable
    }
  }
  info.source = KernelSourceKind::Nvrtc;
  auto m = from_data(cubin.data(), info);
  if (m.ok()) m->info_.seconds = now_s() - t0;
  return m;
}

Expected<KernelModule> KernelModule::load(const Artifact& artifact, int device) {
  std::vector<KernelImageInfo> images;
  if (const auto* ks = artifact.metadata().kernels()) {
    for (const fb::KernelImage* k : *ks) {
      KernelImageInfo i;
      i.module = k->module_name() ? k->module_name()->str() : "";
      i.arch = k->arch() ? k->arch()->str() : "";
      i.format = k->format() ? k->format()->str() : "";
      i.key = k->key() ? k->key()->str() : "";
      i.offset = k->offset();
      i.size = k->size();
      if (i.module == kKernelModuleName) images.push_back(std::move(i));
    }
  }
  std::vector<uint8_t> blob;
  if (!images.empty()) {
    QW_ASSIGN_OR_RETURN(blob, artifact.section_payload(fb::SectionKind::Kernels));
  }
  // INT4 artifacts: the NVRTC fallback must build the same source qwc did (with the INT4
  // kernels and their group sizes), read back from the weights' QuantParams.
  QW_ASSIGN_OR_RETURN(std::optional<Int4KernelConstants> int4, quant::int4_kernel_constants(artifact));
  return load_images(images, blob, artifact.config(), artifact.tp_plan(), artifact.weight_dtype(), device,
                     int4 ? &*int4 : nullptr);
}

Expected<KernelModule> KernelModule::compile_for_device(const ModelConfig& config, const TpPlan& plan,
                                                        DType weight_dtype, int device,
                                                        const Int4KernelConstants* int4) {
  return load_images({}, {}, config, plan, weight_dtype, device, int4);
}

Expected<cudaKernel_t> KernelModule::get(const std::string& name) const {
  auto it = cache_.find(name);
  if (it != cache_.end()) return it->second;
  cudaKernel_t k = nullptr;
  cudaError_t e = cudaLibraryGetKernel(&k, lib_, name.c_str());
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return Status::Error("kernel '" + name + "' not found in the module (" + cudaGetErrorName(e) + ")");
  }
  cache_[name] = k;
  return k;
}

}  // namespace qw::gpu

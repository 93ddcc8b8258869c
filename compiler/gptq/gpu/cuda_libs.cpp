#include "compiler/gptq/gpu/cuda_libs.h"

#include <dlfcn.h>

#include <mutex>
#include <type_traits>
#include <vector>

namespace qw::gptq::gpu {

namespace {

// dlopen by soname first (LD_LIBRARY_PATH, ldconfig), then the toolkit qwc was built with,
// then the toolkit's usual place.
void* open_library(const char* soname, std::string& loaded, std::string& tried) {
  for (const std::string& name : {std::string(soname), std::string(QW_CUDA_LIB_DIR) + "/" + soname,
                                  std::string("/usr/local/cuda/lib64/") + soname}) {
    if (void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      loaded = name;
      return lib;
    }
    const char* err = dlerror();
    tried += (tried.empty() ? "" : "; ") + name + (err ? std::string(" (") + err + ")" : "");
  }
  return nullptr;
}

template <typename Fn>
bool bind(void* lib, Fn& fn, const char* symbol, std::string& missing) {
  fn = reinterpret_cast<Fn>(dlsym(lib, symbol));
  if (!fn) missing += (missing.empty() ? "" : ", ") + std::string(symbol);
  return fn != nullptr;
}

Expected<CudaMathApi> open_math() {
  CudaMathApi api;
  std::string tried;
  void* blas = open_library("libcublas.so.13", api.cublas_path, tried);
  if (!blas) return Status::Error("cuBLAS not found (tried " + tried + ")");
  tried.clear();
  void* solver = open_library("libcusolver.so.12", api.cusolver_path, tried);
  if (!solver) return Status::Error("cuSOLVER not found (tried " + tried + ")");
  std::string missing;
  bind(blas, api.cublas_create, "cublasCreate_v2", missing);
  bind(blas, api.cublas_destroy, "cublasDestroy_v2", missing);
  bind(blas, api.cublas_set_stream, "cublasSetStream_v2", missing);
  bind(blas, api.cublas_set_math_mode, "cublasSetMathMode", missing);
  bind(blas, api.sgemm, "cublasSgemm_v2", missing);
  bind(blas, api.dsyrk, "cublasDsyrk_v2", missing);
  bind(blas, api.dgemm, "cublasDgemm_v2", missing);
  bind(solver, api.solver_create, "cusolverDnCreate", missing);
  bind(solver, api.solver_destroy, "cusolverDnDestroy", missing);
  bind(solver, api.solver_set_stream, "cusolverDnSetStream", missing);
  bind(solver, api.potrf_buffer_size, "cusolverDnDpotrf_bufferSize", missing);
  bind(solver, api.potrf, "cusolverDnDpotrf", missing);
  bind(solver, api.potri_buffer_size, "cusolverDnDpotri_bufferSize", missing);
  bind(solver, api.potri, "cusolverDnDpotri", missing);
  if (!missing.empty())
    return Status::Error(api.cublas_path + " / " + api.cusolver_path + ": missing symbols " +
                         missing);
  // The libraries stay loaded for the life of the process (the API table points into them).
  return api;
}

}  // namespace

Expected<const CudaMathApi*> load_cuda_math() {
  static std::once_flag once;
  static Expected<CudaMathApi> api = Status::Error("not loaded");
  std::call_once(once, [] { api = open_math(); });
  if (!api.ok()) return api.status();
  return &api.value();
}

Status cublas_error(cublasStatus_t s, const std::string& what) {
  return Status::Error("cuBLAS error " + std::to_string(int(s)) + " in " + what);
}

Status cusolver_error(cusolverStatus_t s, const std::string& what) {
  return Status::Error("cuSOLVER error " + std::to_string(int(s)) + " in " + what);
}

Expected<GpuContext> GpuContext::create() {
  GpuContext c;
  QW_ASSIGN_OR_RETURN(c.api_, load_cuda_math());
  QW_ASSIGN_OR_RETURN(c.stream_, qw::gpu::Stream::create());
  QW_RETURN_IF_ERROR(check_cublas(c.api_->cublas_create(&c.cublas_), "cublasCreate"));
  QW_RETURN_IF_ERROR(
      check_cublas(c.api_->cublas_set_stream(c.cublas_, c.stream()), "cublasSetStream"));
  QW_RETURN_IF_ERROR(check_cublas(c.api_->cublas_set_math_mode(c.cublas_, CUBLAS_DEFAULT_MATH),
                                  "cublasSetMathMode"));
  QW_RETURN_IF_ERROR(check_cusolver(c.api_->solver_create(&c.solver_), "cusolverDnCreate"));
  QW_RETURN_IF_ERROR(
      check_cusolver(c.api_->solver_set_stream(c.solver_, c.stream()), "cusolverDnSetStream"));
  return c;
}

void GpuContext::release() {
  if (api_) {
    if (solver_) api_->solver_destroy(solver_);
    if (cublas_) api_->cublas_destroy(cublas_);
  }
  solver_ = nullptr;
  cublas_ = nullptr;
}

GpuContext::~GpuContext() {
  release();
}

GpuContext::GpuContext(GpuContext&& o) noexcept
    : api_(o.api_),
      stream_(std::move(o.stream_)),
      cublas_(std::exchange(o.cublas_, nullptr)),
      solver_(std::exchange(o.solver_, nullptr)) {}

GpuContext& GpuContext::operator=(GpuContext&& o) noexcept {
  if (this != &o) {
    release();
    api_ = o.api_;
    stream_ = std::move(o.stream_);
    cublas_ = std::exchange(o.cublas_, nullptr);
    solver_ = std::exchange(o.solver_, nullptr);
  }
  return *this;
}

Status GpuContext::sync(const std::string& what) const {
  return check_cuda(cudaStreamSynchronize(stream()), what);
}

Status upload(DeviceBuffer& dst, const void* src, size_t bytes, cudaStream_t s,
              const std::string& what) {
  if (bytes > dst.size())
    return Status::Error("internal: upload of " + what + " overflows its buffer");
  if (bytes == 0) return Status::Ok();
  // Synchronous with respect to the host buffer: the caller may free it right after.
  QW_RETURN_IF_ERROR(check_cuda(cudaMemcpyAsync(dst.get(), src, bytes, cudaMemcpyHostToDevice, s),
                                "upload of " + what));
  return check_cuda(cudaStreamSynchronize(s), "upload of " + what);
}

Status download(void* dst, const DeviceBuffer& src, size_t bytes, cudaStream_t s,
                const std::string& what) {
  if (bytes > src.size())
    return Status::Error("internal: download of " + what + " reads past its buffer");
  if (bytes == 0) return Status::Ok();
  QW_RETURN_IF_ERROR(check_cuda(cudaMemcpyAsync(dst, src.get(), bytes, cudaMemcpyDeviceToHost, s),
                                "download of " + what));
  return check_cuda(cudaStreamSynchronize(s), "download of " + what);
}

}  // namespace qw::gptq::gpu

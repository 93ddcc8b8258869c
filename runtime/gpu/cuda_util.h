// CUDA error handling and RAII owners for the GPU runtime. Every CUDA call is checked;
// failures become qw::Status naming the call, file and line.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <utility>

#include "core/status.h"

namespace qw::gpu {

inline Status cuda_error(cudaError_t e, const char* what, const char* file, int line) {
  return Errorf("CUDA error %s (%s) in %s at %s:%d", cudaGetErrorName(e), cudaGetErrorString(e), what,
                file, line);
}

}  // namespace qw::gpu

#define QW_CUDA(expr)                                                                   \
  do {                                                                                  \
    cudaError_t _qw_ce = (expr);                                                        \
    if (_qw_ce != cudaSuccess) return ::qw::gpu::cuda_error(_qw_ce, #expr, __FILE__, __LINE__); \
  } while (0)

namespace qw::gpu {

inline std::string gib(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return b;
}

// Owns one CUDA allocation released with `Free` (cudaFree or cudaFreeHost).
template <cudaError_t (*Free)(void*)>
class CudaAllocation {
 public:
  CudaAllocation() = default;
  ~CudaAllocation() { reset(); }
  CudaAllocation(const CudaAllocation&) = delete;
  CudaAllocation& operator=(const CudaAllocation&) = delete;
  CudaAllocation(CudaAllocation&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  CudaAllocation& operator=(CudaAllocation&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  void reset() {
    if (p_) Free(p_);
    p_ = nullptr;
    n_ = 0;
  }
  void* get() const { return p_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t size() const { return n_; }

 protected:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// Device memory (cudaMalloc). Says how much was needed and free when it fails.
class DeviceBuffer : public CudaAllocation<cudaFree> {
 public:
  static Expected<DeviceBuffer> alloc(size_t bytes, const std::string& what) {
    DeviceBuffer b;
    if (bytes == 0) return b;
    cudaError_t e = cudaMalloc(&b.p_, bytes);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      return Status::Error("not enough GPU memory for " + what + ": needs " + gib(double(bytes)) + ", " +
                           gib(double(free_b)) + " free of " + gib(double(total_b)) + " (" +
                           cudaGetErrorName(e) + ")");
    }
    b.n_ = bytes;
    return b;
  }
};

// Page-locked host memory (cudaHostAlloc).
class PinnedBuffer : public CudaAllocation<cudaFreeHost> {
 public:
  static Expected<PinnedBuffer> alloc(size_t bytes) {
    PinnedBuffer b;
    QW_CUDA(cudaHostAlloc(&b.p_, bytes, cudaHostAllocDefault));
    b.n_ = bytes;
    return b;
  }
};

class Stream {
 public:
  Stream() = default;
  ~Stream() {
    if (s_) cudaStreamDestroy(s_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stream& operator=(Stream&& o) noexcept {
    if (this != &o) {
      if (s_) cudaStreamDestroy(s_);
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  static Expected<Stream> create() {
    Stream s;
    QW_CUDA(cudaStreamCreateWithFlags(&s.s_, cudaStreamNonBlocking));
    return s;
  }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  Event() = default;
  ~Event() {
    if (e_) cudaEventDestroy(e_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  Event(Event&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  Event& operator=(Event&& o) noexcept {
    if (this != &o) {
      if (e_) cudaEventDestroy(e_);
      e_ = std::exchange(o.e_, nullptr);
    }
    return *this;
  }
  static Expected<Event> create(bool timing = false) {
    Event e;
    QW_CUDA(cudaEventCreateWithFlags(&e.e_, timing ? cudaEventDefault : cudaEventDisableTiming));
    return e;
  }
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

}  // namespace qw::gpu

// Shared by the GPU test files: whether a GPU is present (once, with the "skipped" line
// tools/gpu_check.sh looks for), a per-run random seed, printed so a failure can be
// replayed, and checked host <-> device copies.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <doctest/doctest.h>

#include "gpu/cuda_util.h"

namespace qw::testing {

inline bool have_gpu() {
  static int state = -1;
  if (state < 0) {
    int n = 0;
    state = (cudaGetDeviceCount(&n) == cudaSuccess && n > 0) ? 1 : 0;
    if (!state) std::printf("skipped: no GPU\n");
  }
  return state == 1;
}

inline uint64_t gpu_test_seed() {
  static uint64_t s = [] {
    uint64_t v = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
    std::printf("gpu tests: seed %llu\n", (unsigned long long)v);
    return v;
  }();
  return s;
}

template <typename T>
gpu::DeviceBuffer upload(const std::vector<T>& v) {
  auto b = gpu::DeviceBuffer::alloc(std::max<size_t>(1, v.size() * sizeof(T)), "test");
  REQUIRE(b.ok());
  if (!v.empty())
    REQUIRE(cudaMemcpy(b->get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) ==
            cudaSuccess);
  return std::move(*b);
}
template <typename T>
std::vector<T> download(const gpu::DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  REQUIRE(cudaMemcpy(v.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
  return v;
}
// Filled with 0xff: NaN in f32, f16 and bf16, so an output a kernel fails to write shows.
inline gpu::DeviceBuffer poisoned(size_t bytes) {
  auto b = gpu::DeviceBuffer::alloc(bytes, "test");
  REQUIRE(b.ok());
  REQUIRE(cudaMemset(b->get(), 0xff, bytes) == cudaSuccess);
  return std::move(*b);
}

}  // namespace qw::testing

// Shared by the GPU test files: whether a GPU is present (once, with the "skipped" line
// tools/gpu_check.sh looks for) and a per-run random seed, printed so a failure can be
// replayed.
#pragma once
#include <cuda_runtime.h>

#include <chrono>
#include <cstdint>
#include <cstdio>

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

}  // namespace qw::testing

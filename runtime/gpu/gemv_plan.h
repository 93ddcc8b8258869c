// Launch shape of the decode GEMVs (kernels_templates/gemv.cuh): how many warps share one
// row pair (ks), and the grid that follows. Host-only planning; the kernels take ks as an
// argument, so the plan can follow the device's SM count.
#pragma once
#include <cstdint>
#include <initializer_list>

namespace qw::gpu {

constexpr int kGemvWarpsPerBlock = 4;  // QW_GEMV_THREADS / 32

// Blocks of a GEMV over `pairs` row pairs (fused gate|up: gate/up pairs) with ks warps each.
inline int64_t gemv_blocks(int64_t pairs, int ks) {
  return (pairs * ks + kGemvWarpsPerBlock - 1) / kGemvWarpsPerBlock;
}

// For 1-2 activation rows: the smallest ks in {1, 2, 4} whose blocks spread over the SMs
// within 5% of evenly (the SMs holding one block more than the rest set a memory-bound
// kernel's time), else the most even. Row pairs are equal work, so the busiest SM's share is
// ceil(blocks / sms). From 3 rows on, 1: the 7b graph replay on an H100 at 4 rows was
// 5.87 ms with ks 1 and 6.06-6.14 with ks 2/4 (at 1 row 5.47 with ks 1, 5.37-5.40 with 2).
inline int gemv_warps_per_pair(int64_t pairs, int sms, int rows = 1) {
  if (sms < 1 || pairs < 1 || rows > 2) return 1;
  int best = 1;
  double best_excess = 1e30;
  for (int ks : {1, 2, 4}) {
    const double b = double(gemv_blocks(pairs, ks));
    const double excess = double((int64_t(b) + sms - 1) / sms) * sms / b;  // >= 1
    if (excess <= 1.05) return ks;
    if (excess < best_excess) best = ks, best_excess = excess;
  }
  return best;
}

}  // namespace qw::gpu

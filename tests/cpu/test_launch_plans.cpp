// Host-side launch planning of the GPU decode kernels (no GPU needed): the GEMV's warps per
// row pair for the 7b shapes on an H100/H200 (132 SMs) and a few edge cases.
#include <doctest/doctest.h>

#include <initializer_list>

#include "gpu/gemv_plan.h"

using namespace qw::gpu;

namespace {
// How unevenly `blocks` spread over `sms`: the busiest SM's share over the mean (>= 1).
double excess(int64_t blocks, int sms) {
  return double((blocks + sms - 1) / sms) * sms / double(blocks);
}
}  // namespace

TEST_CASE("GEMV warps per row pair spread the blocks evenly over the SMs") {
  CHECK(gemv_blocks(1792, 1) == 448);
  CHECK(gemv_blocks(1792, 2) == 896);
  CHECK(gemv_blocks(3, 4) == 3);
  CHECK(gemv_blocks(3, 1) == 1);
  // 7b, 132 SMs: o_proj / down_proj (3584 outputs = 1792 pairs) and qkv (4608 = 2304 pairs)
  // leave 3.4 / 4.4 blocks per SM with one warp per pair; two warps make it even.
  CHECK(gemv_warps_per_pair(1792, 132) == 2);
  CHECK(gemv_warps_per_pair(2304, 132) == 2);
  CHECK(excess(gemv_blocks(1792, 2), 132) < 1.05);
  // gate|up (18944 pairs, 4736 blocks) and lm_head (76032 pairs) are already even.
  CHECK(gemv_warps_per_pair(18944, 132) == 1);
  CHECK(gemv_warps_per_pair(76032, 132) == 1);
  // Whatever the shape, the choice is the most even of 1, 2, 4 (or the first within 5%).
  for (int sms : {1, 2, 7, 108, 132, 144})
    for (int64_t pairs = 1; pairs < 5000; pairs += 37) {
      const int ks = gemv_warps_per_pair(pairs, sms);
      REQUIRE((ks == 1 || ks == 2 || ks == 4));
      const double e = excess(gemv_blocks(pairs, ks), sms);
      for (int other : {1, 2, 4})
        if (other < ks)
          CHECK(excess(gemv_blocks(pairs, other), sms) > 1.05);
        else if (e > 1.05)
          CHECK(e <= excess(gemv_blocks(pairs, other), sms));
    }
  // From 3 rows on one warp per pair (measured faster at 4 rows).
  CHECK(gemv_warps_per_pair(1792, 132, 2) == 2);
  CHECK(gemv_warps_per_pair(1792, 132, 3) == 1);
  CHECK(gemv_warps_per_pair(2304, 132, 4) == 1);
  CHECK(gemv_warps_per_pair(0, 132) == 1);
  CHECK(gemv_warps_per_pair(100, 0) == 1);
}

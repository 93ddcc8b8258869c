// Splits [0, n) into contiguous chunks run on up to `threads` std::threads (the caller's
// thread takes the first). For coarse work (MBs per chunk): threads are not pooled.
#pragma once
#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace qw {

inline unsigned default_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

template <typename Fn>
void parallel_for(int64_t n, unsigned threads, Fn&& fn) {
  const int64_t t = std::max<int64_t>(1, std::min<int64_t>(threads, n));
  if (t == 1) {
    if (n > 0) fn(int64_t(0), n);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t step = (n + t - 1) / t;
  for (int64_t i = 1; i < t; ++i) {
    const int64_t b = i * step, e = std::min(n, b + step);
    if (b < e) pool.emplace_back([&fn, b, e] { fn(b, e); });
  }
  fn(int64_t(0), std::min(n, step));
  for (auto& th : pool) th.join();
}

}  // namespace qw

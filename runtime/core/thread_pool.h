// A small fixed pool of std::threads for data-parallel loops (CPU matmul rows and
// attention heads, per-sequence sampling in the serving engine). The calling thread takes
// a share of the work, so a pool of size 1 spawns no threads at all and runs everything
// inline.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace qw {

class ThreadPool {
 public:
  // threads <= 0 picks std::thread::hardware_concurrency().
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  // Calls fn(begin, end) on disjoint contiguous sub-ranges covering [0, n), one per
  // participating thread, and returns when all are done. Sub-range boundaries are
  // multiples of `grain` (except the last), so callers can keep SIMD tiles whole.
  // Not reentrant: fn must not call parallel_for on the same pool.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_grain_ = 1;
  int job_parts_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

}  // namespace qw

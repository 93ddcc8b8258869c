// Prometheus text-format metrics for qwrun serve (names follow vLLM's where one exists).
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "serving/engine.h"

namespace qw {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the _bucket/_sum/_count lines for `name`.
  void render(const std::string& name, std::string& out) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket (non-cumulative), last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  void count_request(int status);
  void count_finish(const std::string& reason);
  Histogram ttft, itl, e2e;
  std::atomic<double> startup_seconds{0};
  std::string render(const EngineStats& engine, const std::string& model_name) const;

 private:
  mutable std::mutex mu_;
  std::map<int, uint64_t> requests_by_status_;
  std::map<std::string, uint64_t> finishes_;
};

}  // namespace qw

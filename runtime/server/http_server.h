// qwrun serve's HTTP front: OpenAI-compatible routes over the batching Engine, auth,
// limits, health/readiness, Prometheus metrics, SSE streaming, graceful drain.
#pragma once
#include <atomic>
#include <memory>
#include <string>

#include "core/status.h"
#include "server/metrics.h"
#include "server/openai_protocol.h"
#include "serving/engine.h"

namespace qw {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;                        // empty: no auth
  size_t max_body_bytes = size_t(8) << 20;    // larger bodies get 413
  double request_timeout_seconds = 600;       // per request, 0 = none
  double drain_seconds = 30;                  // SIGTERM grace period
  int http_threads = 512;                     // concurrent connections (streams hold one)
  bool log_json = false;
};

class HttpServer {
 public:
  HttpServer(Engine& engine, ApiContext api, ServerMetrics& metrics, ServerOptions opts);
  ~HttpServer();
  // Binds and serves until shutdown() completes. Fails if the address cannot be bound.
  Status run();
  // Graceful stop (SIGTERM): refuse new work (503), let running requests finish for up to
  // drain_seconds, cancel the rest, then stop listening. Safe to call from any thread.
  void shutdown();
  void set_ready(bool r) { ready_ = r; }
  int bound_port() const { return bound_port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Engine& engine_;
  ApiContext api_;
  ServerMetrics& metrics_;
  ServerOptions opts_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  std::atomic<int> bound_port_{0};
};

}  // namespace qw

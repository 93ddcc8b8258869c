// An in-process qwrun server over the tiny model on the CPU, on a free port.
#pragma once
#include <httplib.h>

#include <memory>
#include <thread>

#include "cli/model_loader.h"
#include "compiler/test_support.h"
#include "server/http_server.h"

namespace qw::testing {

inline const std::string& tiny_artifact() {
  static std::string path;
  if (path.empty()) {
    const auto dir = scratch_dir("server_artifact");
    path = (dir / "tiny.qwart").string();
    CompileOptions o;
    o.checkpoint_dir = tiny_checkpoint();
    o.output = path;
    o.threads = 2;
    o.tokenizer_builder = [](const std::string& d) { return build_tokenizer_blob(d); };
    auto r = compile_checkpoint(o);
    if (!r.ok()) throw std::runtime_error(r.status().message());
  }
  return path;
}

struct TestServer {
  explicit TestServer(ServerOptions so = {}, EngineOptions eo = {}, bool prefix_caching = true,
                      bool reduce_rows = false) {
    LoadOptions lo;
    lo.device = "cpu";
    lo.threads = 2;
    lo.prefix_caching = prefix_caching;
    lo.reduce_rows_on_host = reduce_rows;
    auto m = load_model(tiny_artifact(), lo);
    if (!m.ok()) throw std::runtime_error(m.status().message());
    model = std::move(*m);
    if (eo.scheduler.max_batch_tokens == 2048) eo.scheduler.max_batch_tokens = 256;
    engine = std::make_unique<Engine>(*model->executor, model->tokenizer, eo);
    api.tokenizer = &model->tokenizer;
    api.config = &model->artifact->config();
    api.defaults = &model->artifact->generation();
    api.model_name = "tiny";
    api.max_context = model->executor->max_context();
    so.port = 0;
    server = std::make_unique<HttpServer>(*engine, api, metrics, so);
    thread = std::thread([this] { run_status = server->run(); });
    while (server->bound_port() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    server->set_ready(true);
  }
  ~TestServer() {
    server->shutdown();
    thread.join();
  }
  // A sample's value from /metrics (the first series of that name).
  double metric(const std::string& name) const {
    auto c = client();
    auto r = c.Get("/metrics");
    if (!r) throw std::runtime_error("GET /metrics failed");
    const std::string key = name + "{";
    const size_t at = r->body.find("\n" + key);
    if (at == std::string::npos) throw std::runtime_error("no metric " + name);
    const size_t sp = r->body.find("} ", at);
    return std::stod(r->body.substr(sp + 2));
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server->bound_port());
    c.set_read_timeout(120, 0);
    return c;
  }
  std::unique_ptr<LoadedModel> model;
  ServerMetrics metrics;
  std::unique_ptr<Engine> engine;
  ApiContext api;
  std::unique_ptr<HttpServer> server;
  Status run_status;
  std::thread thread;
};

}  // namespace qw::testing

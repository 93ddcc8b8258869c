// qwrun serve: the OpenAI-compatible HTTP server.
#include <pthread.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "cli/commands.h"
#include "cli/model_loader.h"
#include "server/http_server.h"

namespace qw::cli {

Runner add_serve_command(CLI::App& app) {
  struct Opts {
    std::string file, model_name, log_format = "plain";
    ServerOptions server;
    LoadOptions load;
    EngineOptions engine;
    bool allow_special = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("serve", "Serve the model over an OpenAI-compatible HTTP API");
  c->add_option("artifact", o->file, "Compiled model (.qwart)")->required()->check(CLI::ExistingFile);
  c->add_option("--host", o->server.host, "Address to listen on")->capture_default_str();
  c->add_option("--port", o->server.port, "Port (0 = any free port)")->capture_default_str();
  c->add_option("--api-key", o->server.api_key,
                "Require 'Authorization: Bearer KEY' on /v1/* (or set QWRUN_API_KEY)");
  c->add_option("--served-model-name", o->model_name, "Model id in the API (default: file name)");
  c->add_option("--tp", o->load.tp,
                "GPUs for tensor parallelism; must equal the artifact's degree (qwc compile --tp N), "
                "which is the default. Ranks use GPUs 0..N-1 and need NCCL (libnccl.so.2)")
      ->check(CLI::Range(1, 64));
  c->add_option("--device", o->load.device, "auto | cpu | gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))->capture_default_str();
  c->add_option("--threads", o->load.threads, "CPU backend threads (0 = all cores)")
      ->envname("QWRUN_THREADS");
  c->add_option("--kv-cache-gb", o->load.kv_cache_gb, "GPU KV cache size (0 = backend default)")
      ->envname("QWRUN_KV_CACHE_GB");
  c->add_flag("!--no-prefix-caching", o->load.prefix_caching,
              "Recompute every prompt instead of reusing the KV cache of an earlier prompt's "
              "shared prefix (on by default; outputs are the same either way)");
  c->add_flag("!--no-device-sampling", o->load.device_sampling,
              "GPU: copy whole logits rows to the host for sampling instead of reducing them to "
              "top-k candidates on the GPU (same tokens; for comparisons)");
  c->add_option("--max-num-batched-tokens", o->engine.scheduler.max_batch_tokens,
                "Token budget per engine step (decode + prefill chunks)")->capture_default_str();
  c->add_option("--max-num-seqs", o->engine.scheduler.max_running,
                "Most sequences running at once")->capture_default_str()->envname("QWRUN_MAX_NUM_SEQS");
  c->add_option("--max-queue", o->engine.max_waiting,
                "Queued requests before answering 429")->capture_default_str();
  c->add_option("--max-body-bytes", o->server.max_body_bytes, "Request body limit (413 past it)")
      ->capture_default_str();
  c->add_option("--request-timeout", o->server.request_timeout_seconds,
                "Seconds before a request is cancelled (0 = never)")->capture_default_str();
  c->add_option("--drain-seconds", o->server.drain_seconds,
                "On SIGTERM, time given to running requests before they are cancelled")
      ->capture_default_str();
  c->add_flag("--allow-special-tokens", o->allow_special,
              "Let message text produce special tokens such as <|im_start|> (off: they are "
              "tokenized as plain text)");
  c->add_option("--log-format", o->log_format, "plain | json")
      ->check(CLI::IsMember({"plain", "json"}))->capture_default_str();
  return [o] {
    const auto t0 = std::chrono::steady_clock::now();
    if (o->server.api_key.empty())
      if (const char* k = std::getenv("QWRUN_API_KEY")) o->server.api_key = k;
    o->server.log_json = o->log_format == "json";
    // Signals go to one waiting thread (blocked everywhere else) so shutdown runs outside
    // signal context.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    auto m = load_model(o->file, o->load);
    if (!m.ok()) return fail(m.status().message());
    LoadedModel& model = **m;
    ServerMetrics metrics;
    EngineObserver obs;
    obs.on_first_token = [&](double s) { metrics.ttft.observe(s); };
    obs.on_inter_token = [&](double s) { metrics.itl.observe(s); };
    Engine engine(*model.executor, model.tokenizer, o->engine, obs);
    ApiContext api;
    api.tokenizer = &model.tokenizer;
    api.config = &model.artifact->config();
    api.defaults = &model.artifact->generation();
    api.model_name = o->model_name.empty() ? std::filesystem::path(o->file).stem().string()
                                           : o->model_name;
    api.max_context = model.executor->max_context();
    api.allow_special_tokens_in_messages = o->allow_special;
    HttpServer server(engine, api, metrics, o->server);
    std::thread signals([&] {
      int sig = 0;
      sigwait(&set, &sig);
      std::fprintf(stderr, "qwrun: signal %d: draining (up to %.0f s)\n", sig, o->server.drain_seconds);
      server.shutdown();
    });
    signals.detach();
    std::thread ready_marker([&] {
      while (server.bound_port() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      metrics.startup_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      server.set_ready(true);
      std::fprintf(stderr, "qwrun: serving %s (%s) on http://%s:%d, ready in %.2f s\n",
                   api.model_name.c_str(), model.executor->device_name().c_str(),
                   o->server.host.c_str(), server.bound_port(), metrics.startup_seconds.load());
    });
    Status s = server.run();
    ready_marker.join();
    if (!s.ok()) return fail(s.message());
    std::fprintf(stderr, "qwrun: stopped\n");
    return 0;
  };
}

}  // namespace qw::cli

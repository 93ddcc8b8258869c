#include "server/http_server.h"

#include <httplib.h>
#include <openssl/crypto.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "server/chat_html.h"

namespace qw {

namespace {

using ojson = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(e.body().dump(), "application/json");
}

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s%016llx", prefix, (unsigned long long)rng());
  return buf;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Events of the n choices of one HTTP request, handed from the engine thread to the
// connection thread.
struct RequestState {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<int, RequestEvent>> events;
  int finished = 0;
  int n = 0;
  std::vector<SeqId> ids;
};

bool constant_time_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

struct HttpServer::Impl {
  httplib::Server svr;
};

HttpServer::HttpServer(Engine& engine, ApiContext api, ServerMetrics& metrics, ServerOptions opts)
    : impl_(std::make_unique<Impl>()),
      engine_(engine),
      api_(std::move(api)),
      metrics_(metrics),
      opts_(std::move(opts)) {}

HttpServer::~HttpServer() = default;

void HttpServer::shutdown() {
  if (draining_.exchange(true)) return;
  ready_ = false;
  engine_.stop_accepting();
  const auto deadline = Clock::now() + std::chrono::duration<double>(opts_.drain_seconds);
  while (!engine_.idle() && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  engine_.cancel_all();
  while (!engine_.idle()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // Let connection threads write their last bytes before the listener closes.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  impl_->svr.stop();
}

Status HttpServer::run() {
  httplib::Server& svr = impl_->svr;
  const int threads = opts_.http_threads;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  svr.set_payload_max_length(opts_.max_body_bytes);
  svr.set_read_timeout(30, 0);
  svr.set_write_timeout(30, 0);

  svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    if (!opts_.api_key.empty()) {
      const std::string auth = req.get_header_value("Authorization");
      const std::string prefix = "Bearer ";
      const bool ok = auth.rfind(prefix, 0) == 0 &&
                      constant_time_equal(auth.substr(prefix.size()), opts_.api_key);
      if (!ok) {
        send_error(res, ApiError{401, "Incorrect API key provided.", "invalid_request_error", "",
                                 "invalid_api_key"});
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (draining_ || !ready_) {
      res.set_header("Retry-After", "5");
      send_error(res, ApiError{503, draining_ ? "The server is shutting down."
                                              : "The model is still loading.",
                               "service_unavailable", "", ""});
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg = res.status == 404   ? "Not found: " + req.method + " " + req.path
                      : res.status == 413 ? "Request body too large"
                      : res.status == 405 ? "Method not allowed"
                                          : "HTTP error " + std::to_string(res.status);
    const char* type = res.status == 404 ? "NotFoundError" : "invalid_request_error";
    res.set_content(ApiError{res.status, msg, type, "", ""}.body().dump(), "application/json");
  });

  svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics_.count_request(res.status);
    if (opts_.log_json)
      std::fprintf(stderr, "{\"event\":\"http\",\"method\":\"%s\",\"path\":\"%s\",\"status\":%d}\n",
                   req.method.c_str(), req.path.c_str(), res.status);
    else
      std::fprintf(stderr, "qwrun: %s %s %d\n", req.method.c_str(), req.path.c_str(), res.status);
  });

  svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-cache");
    res.set_content(kChatHtml, sizeof(kChatHtml) - 1, "text/html; charset=utf-8");
  });
  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\":\"ok\"}", "application/json");
  });
  svr.Get("/ready", [this](const httplib::Request&, httplib::Response& res) {
    res.status = ready_ ? 200 : 503;
    res.set_content(ready_ ? "{\"status\":\"ready\"}" : "{\"status\":\"not ready\"}",
                    "application/json");
  });
  svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(engine_.stats(), api_.model_name),
                    "text/plain; version=0.0.4");
  });
  svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    ojson m = {{"id", api_.model_name},  {"object", "model"},       {"created", unix_now()},
               {"owned_by", "qwrun"},    {"root", api_.model_name}, {"max_model_len", api_.max_context}};
    res.set_content(ojson{{"object", "list"}, {"data", ojson::array({m})}}.dump(), "application/json");
  });

  auto completion = [this](bool chat) {
    return [this, chat](const httplib::Request& req, httplib::Response& res) {
      auto parsed = chat ? parse_chat_request(req.body, api_) : parse_completion_request(req.body, api_);
      if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(res, *e);
      auto r = std::make_shared<ParsedRequest>(std::move(std::get<ParsedRequest>(parsed)));
      auto st = std::make_shared<RequestState>();
      st->n = r->n;
      const auto started = Clock::now();
      for (int i = 0; i < r->n; ++i) {
        RequestParams p = r->params;
        p.sampling.seed += uint64_t(i);
        p.timeout_seconds = opts_.request_timeout_seconds;
        auto sub = engine_.submit(std::move(p), [st, i](RequestEvent&& ev) {
          std::lock_guard<std::mutex> lock(st->mu);
          if (ev.finished) ++st->finished;
          st->events.emplace_back(i, std::move(ev));
          st->cv.notify_all();
        });
        if (auto* err = std::get_if<Engine::SubmitError>(&sub)) {
          for (SeqId id : st->ids) engine_.cancel(id);
          if (*err == Engine::SubmitError::QueueFull) {
            res.set_header("Retry-After", "1");
            return send_error(res, ApiError{429, "The server is at capacity; retry later.",
                                            "rate_limit_error", "", "rate_limit_exceeded"});
          }
          return send_error(res, ApiError{503, "The server is shutting down.",
                                          "service_unavailable", "", ""});
        }
        std::lock_guard<std::mutex> lock(st->mu);
        st->ids.push_back(std::get<SeqId>(sub));
      }
      const std::string id = random_id(chat ? "chatcmpl-" : "cmpl-");
      const int64_t created = unix_now();
      if (!r->stream) {
        std::vector<ChoiceResult> choices(size_t(r->n));
        int64_t prompt_tokens = 0, completion_tokens = 0;
        std::string error, error_reason;
        std::unique_lock<std::mutex> lock(st->mu);
        st->cv.wait(lock, [&] { return st->finished == st->n; });
        for (auto& [i, ev] : st->events) {
          ChoiceResult& c = choices[size_t(i)];
          c.text += ev.text;
          c.tokens.insert(c.tokens.end(), ev.tokens.begin(), ev.tokens.end());
          for (auto& s : ev.samples) c.samples.push_back(std::move(s));
          if (ev.finished) {
            c.finish_reason = ev.finish_reason;
            prompt_tokens = ev.prompt_tokens;
            completion_tokens += ev.completion_tokens;
            metrics_.count_finish(ev.finish_reason);
            if (!ev.error.empty()) {
              error = ev.error;
              error_reason = ev.finish_reason;
            }
          }
        }
        metrics_.e2e.observe(std::chrono::duration<double>(Clock::now() - started).count());
        if (r->parse_tools)
          for (ChoiceResult& c : choices) {
            ParsedToolOutput t = parse_tool_calls(c.text);
            if (t.calls.empty()) continue;
            c.text = std::move(t.content);
            c.tool_calls = std::move(t.calls);
            if (c.finish_reason == "stop") c.finish_reason = "tool_calls";
          }
        if (!error.empty())
          return send_error(res, ApiError{error_reason == "timeout" ? 504 : 500, error,
                                          error_reason == "timeout" ? "timeout" : "server_error",
                                          "", ""});
        res.set_content(completion_response(*r, api_, id, created, choices, prompt_tokens,
                                            completion_tokens).dump(),
                        "application/json");
        return;
      }
      // Streaming (SSE). A failed write means the client left: cancel at once so the KV
      // blocks return to the pool.
      res.set_header("Cache-Control", "no-cache");
      auto sent_role = std::make_shared<std::vector<bool>>(size_t(r->n), false);
      auto totals = std::make_shared<std::pair<int64_t, int64_t>>(0, 0);
      // With tools, text goes through a parser per choice: <tool_call> blocks leave as
      // delta.tool_calls chunks, the rest as content.
      auto parsers = std::make_shared<std::vector<ToolCallParser>>(size_t(r->n));
      res.set_chunked_content_provider(
          "text/event-stream",
          [this, r, st, id, created, sent_role, totals, started, parsers](size_t,
                                                                          httplib::DataSink& sink) {
            auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
            auto cancel_all = [&] {
              for (SeqId sid : st->ids) engine_.cancel(sid);
            };
            std::deque<std::pair<int, RequestEvent>> batch;
            bool all_done = false;
            {
              std::unique_lock<std::mutex> lock(st->mu);
              st->cv.wait_for(lock, std::chrono::milliseconds(200),
                              [&] { return !st->events.empty(); });
              batch.swap(st->events);
              all_done = st->finished == st->n;
            }
            if (!sink.is_writable()) {
              cancel_all();
              return false;
            }
            const std::string role = "assistant";
            for (auto& [i, ev] : batch) {
              const bool first = r->chat && !(*sent_role)[size_t(i)];
              if (first) {
                (*sent_role)[size_t(i)] = true;
                if (!write("data: " + stream_chunk(*r, api_, id, created, i, &role, "", nullptr, nullptr).dump() + "\n\n")) {
                  cancel_all();
                  return false;
                }
              }
              if (!ev.error.empty()) {
                ApiError e{ev.finish_reason == "timeout" ? 504 : 500, ev.error,
                           ev.finish_reason == "timeout" ? "timeout" : "server_error", "", ""};
                write("data: " + e.body().dump() + "\n\n");
                metrics_.count_finish(ev.finish_reason);
                continue;
              }
              ojson lp;
              const bool with_lp = r->logprobs && !ev.samples.empty();
              if (with_lp)
                lp = logprobs_json(*api_.tokenizer, r->chat, ev.tokens, ev.samples, r->top_logprobs);
              ToolCallParser& parser = (*parsers)[size_t(i)];
              std::vector<ToolCallParser::Piece> pieces;
              if (!r->parse_tools) {
                pieces.push_back({ev.text, std::nullopt});
              } else {
                pieces = parser.push(ev.text);
                if (ev.finished)
                  for (auto& p : parser.finish()) pieces.push_back(std::move(p));
              }
              bool lp_sent = !with_lp;
              for (const auto& piece : pieces) {
                if (piece.call) {
                  for (const auto& chunk : tool_call_chunks(*r, api_, id, created, i,
                                                            parser.calls() - 1, *piece.call))
                    if (!write("data: " + chunk.dump() + "\n\n")) {
                      cancel_all();
                      return false;
                    }
                  continue;
                }
                if (piece.content.empty() && lp_sent) continue;
                if (!write("data: " + stream_chunk(*r, api_, id, created, i, nullptr, piece.content,
                                                   nullptr, lp_sent ? nullptr : &lp).dump() + "\n\n")) {
                  cancel_all();
                  return false;
                }
                lp_sent = true;
              }
              if (!lp_sent) {  // the text is held (a possible tool call): logprobs go alone
                if (!write("data: " + stream_chunk(*r, api_, id, created, i, nullptr, "", nullptr,
                                                   &lp).dump() + "\n\n")) {
                  cancel_all();
                  return false;
                }
              }
              if (ev.finished) {
                totals->first = ev.prompt_tokens;
                totals->second += ev.completion_tokens;
                metrics_.count_finish(ev.finish_reason);
                std::string reason = ev.finish_reason == "cancelled" ? "abort" : ev.finish_reason;
                if (reason == "stop" && parser.calls() > 0) reason = "tool_calls";
                if (!write("data: " + stream_chunk(*r, api_, id, created, i, nullptr, "", &reason, nullptr).dump() + "\n\n")) {
                  cancel_all();
                  return false;
                }
              }
            }
            if (all_done) {
              if (r->include_usage) {
                ojson u = {{"id", id}, {"object", r->chat ? "chat.completion.chunk" : "text_completion"},
                           {"created", created}, {"model", api_.model_name},
                           {"choices", ojson::array()}, {"usage", usage_json(totals->first, totals->second)}};
                write("data: " + u.dump() + "\n\n");
              }
              write("data: [DONE]\n\n");
              metrics_.e2e.observe(std::chrono::duration<double>(Clock::now() - started).count());
              sink.done();
            }
            return true;
          },
          [this, st](bool success) {
            if (!success)
              for (SeqId sid : st->ids) engine_.cancel(sid);
          });
    };
  };
  svr.Post("/v1/chat/completions", completion(true));
  svr.Post("/v1/completions", completion(false));

  if (opts_.port == 0) {
    const int p = svr.bind_to_any_port(opts_.host);
    if (p <= 0) return Status::Error("cannot bind " + opts_.host + " on any port");
    bound_port_ = p;
  } else {
    if (!svr.bind_to_port(opts_.host, opts_.port))
      return Errorf("cannot bind %s:%d (in use, or not permitted)", opts_.host.c_str(), opts_.port);
    bound_port_ = opts_.port;
  }
  if (!svr.listen_after_bind()) {
    if (draining_) return Status::Ok();
    return Status::Error("HTTP listener stopped unexpectedly");
  }
  return Status::Ok();
}

}  // namespace qw

// qwrun serve end to end over real HTTP on the tiny model (CPU).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server_fixture.h"

using namespace qw;
using json = nlohmann::json;

namespace {

json post_json(httplib::Client& c, const std::string& path, const json& body, int expect_status,
               const httplib::Headers& h = {}) {
  auto r = c.Post(path, h, body.dump(), "application/json");
  REQUIRE(r);
  CHECK_MESSAGE(r->status == expect_status, r->body);
  return json::parse(r->body, nullptr, false);
}

json chat_body(const std::string& text, int max_tokens = 12) {
  return {{"model", "tiny"},
          {"messages", {{{"role", "user"}, {"content", text}}}},
          {"max_tokens", max_tokens},
          {"temperature", 0}};
}

// Concatenated content of an SSE chat stream; checks the framing on the way.
std::string read_stream(httplib::Client& c, const json& body, bool* saw_done = nullptr,
                        json* usage = nullptr) {
  std::string raw;
  auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  REQUIRE(r);
  REQUIRE_MESSAGE(r->status == 200, r->body);
  raw = r->body;
  std::string text;
  bool done = false;
  size_t pos = 0;
  while ((pos = raw.find("data: ", pos)) != std::string::npos) {
    const size_t end = raw.find("\n\n", pos);
    const std::string payload = raw.substr(pos + 6, end - pos - 6);
    pos = end;
    if (payload == "[DONE]") {
      done = true;
      continue;
    }
    json j = json::parse(payload);
    CHECK(j["object"] == "chat.completion.chunk");
    if (!j["choices"].empty() && j["choices"][0]["delta"].contains("content"))
      text += j["choices"][0]["delta"]["content"].get<std::string>();
    if (usage && j.contains("usage") && !j["usage"].is_null()) *usage = j["usage"];
  }
  if (saw_done) *saw_done = done;
  return text;
}

}  // namespace

TEST_CASE("health, readiness, models, metrics") {
  testing::TestServer s;
  auto c = s.client();
  auto h = c.Get("/health");
  REQUIRE(h);
  CHECK(h->status == 200);
  CHECK(c.Get("/ready")->status == 200);
  auto m = json::parse(c.Get("/v1/models")->body);
  CHECK(m["object"] == "list");
  CHECK(m["data"][0]["id"] == "tiny");
  auto metrics = c.Get("/metrics");
  CHECK(metrics->body.find("qwrun:kv_cache_blocks_total") != std::string::npos);
  CHECK(c.Get("/nope")->status == 404);
}

TEST_CASE("chat completion matches the same request run alone") {
  testing::TestServer s;
  auto c = s.client();
  json r = post_json(c, "/v1/chat/completions", chat_body("Hello there", 16), 200);
  CHECK(r["object"] == "chat.completion");
  CHECK(r["choices"][0]["message"]["role"] == "assistant");
  CHECK(r["usage"]["completion_tokens"].get<int>() >= 1);
  CHECK(r["usage"]["total_tokens"] == r["usage"]["prompt_tokens"].get<int>() +
                                          r["usage"]["completion_tokens"].get<int>());
  const std::string text = r["choices"][0]["message"]["content"];

  // The same prompt through the single-sequence generator.
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  msgs.push_back({{"role", "user"}, {"content", "Hello there"}});
  auto rendered = s.model->tokenizer.render_chat(msgs, nlohmann::ordered_json::array(), true);
  REQUIRE(rendered.ok());
  GenerateRequest g;
  g.seq = 999999;
  g.prompt = s.model->tokenizer.encode(*rendered, true);
  // Same sampling as the server: generation_config defaults (repetition penalty 1.05), greedy.
  g.sampling = SamplingParams::from_defaults(s.model->artifact->generation());
  g.sampling.temperature = 0;
  g.max_new_tokens = 16;
  g.eos_ids = {151645, 151643};
  CHECK(r["usage"]["prompt_tokens"] == g.prompt.size());
  // Engine and generator share the executor; wait until the engine is idle first.
  while (!s.engine->idle()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  StreamDecoder dec(s.model->tokenizer);
  auto alone = generate(*s.model->executor, g, [&](int32_t id) { return dec.push(id); });
  REQUIRE(alone.ok());
  CHECK(alone->text == text);

  bool done = false;
  json usage;
  json sb = chat_body("Hello there", 16);
  sb["stream"] = true;
  sb["stream_options"] = {{"include_usage", true}};
  CHECK(read_stream(c, sb, &done, &usage) == text);
  CHECK(done);
  CHECK(usage["completion_tokens"] == r["usage"]["completion_tokens"]);
}

TEST_CASE("completions endpoint, n, stop, logprobs") {
  testing::TestServer s;
  auto c = s.client();
  json r = post_json(c, "/v1/completions",
                     {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0},
                      {"logprobs", 2}, {"n", 2}},
                     200);
  CHECK(r["object"] == "text_completion");
  REQUIRE(r["choices"].size() == 2);
  CHECK(r["choices"][0]["text"] == r["choices"][1]["text"]);  // greedy: same text
  CHECK(r["choices"][0]["logprobs"]["tokens"].size() == 8);
  CHECK(r["choices"][0]["logprobs"]["top_logprobs"][0].size() == 2);
  CHECK(r["choices"][0]["finish_reason"] == "length");
  // A stop string cut at its first appearance.
  const std::string full = r["choices"][0]["text"];
  if (full.size() > 4) {
    const std::string stop = full.substr(2, 2);
    json r2 = post_json(c, "/v1/completions",
                        {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0},
                         {"stop", stop}},
                        200);
    CHECK(r2["choices"][0]["finish_reason"] == "stop");
    CHECK(r2["choices"][0]["text"] == full.substr(0, full.find(stop)));
  }
}

TEST_CASE("bad requests get OpenAI error bodies") {
  ServerOptions so;
  so.max_body_bytes = 4096;
  testing::TestServer s(so);
  auto c = s.client();
  auto expect_error = [&](const std::string& body, int status, const std::string& needle) {
    auto r = c.Post("/v1/chat/completions", body, "application/json");
    REQUIRE(r);
    CHECK_MESSAGE(r->status == status, body << " -> " << r->body);
    json j = json::parse(r->body, nullptr, false);
    REQUIRE_MESSAGE(j.contains("error"), r->body);
    CHECK(j["error"].contains("message"));
    CHECK(j["error"].contains("type"));
    CHECK_MESSAGE(j["error"]["message"].get<std::string>().find(needle) != std::string::npos,
                  r->body);
  };
  expect_error("{not json", 400, "JSON");
  expect_error("[1,2]", 400, "object");
  expect_error(R"({"messages":"hi"})", 400, "messages");
  expect_error(R"({"messages":[{"role":"user","content":"hi"}],"temperature":"hot"})", 400, "temperature");
  expect_error(R"({"messages":[{"role":"user","content":"hi"}],"temperature":7})", 400, "temperature");
  expect_error(R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":1.5})", 400, "max_tokens");
  expect_error(R"({"messages":[{"role":"user","content":"hi"}],"frobnicate":1})", 400, "frobnicate");
  expect_error(R"({"messages":[{"role":"wizard","content":"hi"}]})", 400, "role");
  expect_error(R"({"model":"gpt-4","messages":[{"role":"user","content":"hi"}]})", 404, "gpt-4");
  expect_error(R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":100000})", 400,
               "maximum context length");
  expect_error("{\"messages\":[{\"role\":\"user\",\"content\":\"" + std::string(8000, 'a') + "\"}]}",
               413, "too large");
}

TEST_CASE("bearer auth on /v1/*") {
  ServerOptions so;
  so.api_key = "sekret";
  testing::TestServer s(so);
  auto c = s.client();
  auto r = c.Post("/v1/chat/completions", chat_body("hi").dump(), "application/json");
  CHECK(r->status == 401);
  CHECK(json::parse(r->body)["error"]["code"] == "invalid_api_key");
  r = c.Post("/v1/chat/completions", {{"Authorization", "Bearer wrong!"}}, chat_body("hi").dump(),
             "application/json");
  CHECK(r->status == 401);
  r = c.Post("/v1/chat/completions", {{"Authorization", "Bearer sekret"}}, chat_body("hi").dump(),
             "application/json");
  CHECK(r->status == 200);
  CHECK(c.Get("/health")->status == 200);  // liveness stays open
}

TEST_CASE("50 parallel streams each equal the request run alone") {
  testing::TestServer s;
  const std::vector<std::string> prompts = {"alpha", "bravo charlie", "delta echo foxtrot",
                                            "golf", "hotel india juliet kilo"};
  std::vector<std::string> alone;
  for (const auto& p : prompts) {
    auto c = s.client();
    json b = chat_body(p, 20);
    b["stream"] = true;
    alone.push_back(read_stream(c, b));
  }
  std::vector<std::string> got(50);
  std::vector<std::thread> ts;
  for (int i = 0; i < 50; ++i)
    ts.emplace_back([&, i] {
      auto c = s.client();
      json b = chat_body(prompts[size_t(i) % prompts.size()], 20);
      b["stream"] = true;
      got[size_t(i)] = read_stream(c, b);
    });
  for (auto& t : ts) t.join();
  for (int i = 0; i < 50; ++i) CHECK(got[size_t(i)] == alone[size_t(i) % prompts.size()]);
}

TEST_CASE("a client that disconnects mid-stream frees its KV blocks") {
  testing::TestServer s;
  auto used_blocks = [&] {
    auto c = s.client();
    auto r = c.Get("/metrics");
    std::smatch m;
    std::regex re("qwrun:kv_cache_blocks_used\\{[^}]*\\} ([0-9.e+]+)");
    REQUIRE(std::regex_search(r->body, m, re));
    return std::stod(m[1]);
  };
  {
    // A raw socket: send the request, read a few chunks, hang up.
    json b = chat_body("tell me a long story", 4000);
    b["stream"] = true;
    b["ignore_eos"] = true;
    const std::string body = b.dump();
    const std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                            "application/json\r\nContent-Length: " + std::to_string(body.size()) +
                            "\r\n\r\n" + body;
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(s.server->bound_port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::write(fd, req.data(), req.size()) == ssize_t(req.size()));
    char buf[4096];
    size_t got = 0;
    while (got < 2000) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      REQUIRE(n > 0);
      got += size_t(n);
    }
    CHECK(used_blocks() > 0);  // the sequence holds KV while it streams
    ::close(fd);
  }
  bool freed = false;
  for (int i = 0; i < 200 && !freed; ++i) {
    freed = used_blocks() == 0 && s.engine->idle();
    if (!freed) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(freed);
}

TEST_CASE("prefix caching: a shared system prompt is reused, and answers do not change") {
  const std::string system =
      "You are a careful assistant for a shipping company. Answer in one short sentence, "
      "name the warehouse, and never invent tracking numbers. Warehouses: Rotterdam, "
      "Hamburg, Antwerp, Felixstowe, Valencia, Genoa, Piraeus and Gdansk.";
  auto body = [&](const std::string& user) {
    json b = chat_body(user, 16);
    b["messages"] = {{{"role", "system"}, {"content", system}}, {{"role", "user"}, {"content", user}}};
    return b;
  };
  const std::vector<std::string> users = {"Where is order 17?", "Which port is in Spain?",
                                          "Where is order 17?"};
  auto answers = [&](testing::TestServer& s) {
    std::vector<std::string> out;
    for (const auto& u : users) {
      auto c = s.client();
      json r = post_json(c, "/v1/chat/completions", body(u), 200);
      out.push_back(r["choices"][0]["message"]["content"].get<std::string>());
    }
    return out;
  };
  testing::TestServer off({}, {}, false);
  const auto want = answers(off);
  CHECK(off.metric("qwrun:prefix_cache_hits_total") == 0);

  testing::TestServer on;
  const auto got = answers(on);
  CHECK(got == want);
  const double queries = on.metric("qwrun:prefix_cache_queries_total");
  const double hits = on.metric("qwrun:prefix_cache_hits_total");
  // The second and third requests reuse at least the system prompt's full blocks; the third
  // repeats the first and reuses all but its last partial block.
  CHECK(queries > 0);
  CHECK(hits >= 2 * 48);
  CHECK(hits < queries);
  CHECK(on.metric("qwrun:prefix_cache_hit_rate") == doctest::Approx(hits / queries));
  // The reply is sent before the engine releases the sequence: wait for it to go idle.
  for (int i = 0; i < 200 && !on.engine->idle(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // stats refresh after the step
  CHECK(on.metric("qwrun:kv_cache_blocks_used") == 0);
  CHECK(on.metric("qwrun:kv_cache_blocks_cached") > 0);
}

TEST_CASE("rows reduced to candidates (sampling on the device) answer as whole rows do") {
  // The engine asks the backend for candidates instead of rows; the CPU backend can reduce
  // on the host like the GPU does on the device. Same requests, same seeds: same answers,
  // same logprobs, for greedy, Qwen's sampling defaults, penalties, and rows that cannot
  // be reduced (no top-k) mixed into the same steps.
  const std::vector<json> params = {
      {{"temperature", 0}},
      {{"temperature", 0}, {"logprobs", 3}, {"repetition_penalty", 1.3}},
      {{"temperature", 0.7}, {"top_k", 20}, {"top_p", 0.8}, {"repetition_penalty", 1.05}},
      {{"temperature", 1.0}, {"top_k", 5}, {"presence_penalty", 0.8}, {"frequency_penalty", 0.4},
       {"logprobs", 5}},
      {{"temperature", 0.9}, {"top_k", 0}, {"top_p", 0.95}},  // needs the whole row
  };
  auto answers = [&](testing::TestServer& s) {
    std::vector<json> out(params.size());
    std::vector<std::thread> ts;
    for (size_t i = 0; i < params.size(); ++i)
      ts.emplace_back([&, i] {
        auto c = s.client();
        json b = params[i];
        b["prompt"] = "Tell me about the ports of the North Sea";
        b["max_tokens"] = 24;
        b["n"] = 2;
        b["seed"] = 40 + int(i);
        b["ignore_eos"] = true;
        out[i] = post_json(c, "/v1/completions", b, 200)["choices"];
      });
    for (auto& t : ts) t.join();
    return out;
  };
  testing::TestServer whole;
  const auto want = answers(whole);
  testing::TestServer reduced({}, {}, true, true);
  const auto got = answers(reduced);
  CHECK(whole.metric("qwrun:sampled_rows_reduced_total") == 0);
  // 4 of the 5 parameter sets reduce: 2 choices x 24 tokens each.
  CHECK(reduced.metric("qwrun:sampled_rows_reduced_total") >= 4 * 2 * 24);
  CHECK(reduced.metric("qwrun:sampled_rows_total") == 5 * 2 * 24);
  for (size_t i = 0; i < params.size(); ++i) {
    INFO(params[i].dump());
    REQUIRE(got[i].size() == 2);
    for (size_t c = 0; c < 2; ++c) {
      CHECK(got[i][c]["text"] == want[i][c]["text"]);
      CHECK(got[i][c]["logprobs"] == want[i][c]["logprobs"]);
    }
  }
}

TEST_CASE("a full queue answers 429 with Retry-After") {
  EngineOptions eo;
  eo.max_waiting = 1;
  eo.scheduler.max_running = 1;
  testing::TestServer s({}, eo);
  std::vector<std::thread> ts;
  std::atomic<int> n429{0}, n200{0};
  for (int i = 0; i < 6; ++i)
    ts.emplace_back([&] {
      auto c = s.client();
      json b = chat_body("count", 64);
      b["ignore_eos"] = true;
      auto r = c.Post("/v1/chat/completions", b.dump(), "application/json");
      if (r && r->status == 429 && r->has_header("Retry-After")) ++n429;
      if (r && r->status == 200) ++n200;
    });
  for (auto& t : ts) t.join();
  CHECK(n429 >= 1);
  CHECK(n200 >= 1);
}

TEST_CASE("--tp that disagrees with the artifact is refused, naming both degrees") {
  LoadOptions lo;
  lo.device = "cpu";
  lo.tp = 2;
  auto m = load_model(testing::tiny_artifact(), lo);
  REQUIRE(!m.ok());
  CHECK(m.status().message().find("--tp 2") != std::string::npos);
  CHECK(m.status().message().find("tensor parallelism 1") != std::string::npos);
  lo.tp = 1;
  CHECK(load_model(testing::tiny_artifact(), lo).ok());
}

TEST_CASE("an INT4 artifact loads on the CPU and steps to finite logits") {
  const auto dir = testing::scratch_dir("int4_artifact");
  const std::string path = (dir / "tiny_int4.qwart").string();
  CompileOptions o;
  o.checkpoint_dir = testing::tiny_checkpoint();
  o.output = path;
  o.threads = 2;
  o.int4 = true;
  o.rtn = true;
  o.group_size = 64;
  o.tokenizer_builder = [](const std::string& d) { return build_tokenizer_blob(d); };
  auto r = compile_checkpoint(o);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  LoadOptions lo;
  lo.device = "cpu";
  auto a = load_model(path, lo);
  REQUIRE_MESSAGE(a.ok(), a.status().message());
  CHECK((*a)->executor->device_name().rfind("cpu", 0) == 0);
  // A step through the quantized projections gives finite logits.
  StepInput in;
  const int32_t toks[] = {1, 2, 3};
  in.seq = 1;
  in.tokens = toks;
  std::vector<float> logits;
  REQUIRE((*a)->executor->step(std::span<const StepInput>(&in, 1), logits).ok());
  REQUIRE(logits.size() == size_t((*a)->executor->config().vocab_size));
  CHECK(std::all_of(logits.begin(), logits.end(), [](float v) { return std::isfinite(v); }));
}

#include "server/metrics.h"

#include <cstdio>

namespace qw {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(const std::string& name, std::string& out) const {
  std::lock_guard<std::mutex> lock(mu_);
  char line[256];
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    std::snprintf(line, sizeof line, "%s_bucket{le=\"%g\"} %llu\n", name.c_str(), bounds_[i],
                  (unsigned long long)cum);
    out += line;
  }
  cum += counts_.back();
  std::snprintf(line, sizeof line, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n",
                name.c_str(), (unsigned long long)cum, name.c_str(), sum_, name.c_str(),
                (unsigned long long)count_);
  out += line;
}

ServerMetrics::ServerMetrics()
    : ttft({0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}),
      itl({0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5}),
      e2e({0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120}) {}

void ServerMetrics::count_request(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_by_status_[status];
}

void ServerMetrics::count_finish(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++finishes_[reason];
}

std::string ServerMetrics::render(const EngineStats& e, const std::string& model) const {
  std::string out;
  char line[512];
  const std::string lbl = "model_name=\"" + model + "\"";
  auto gauge = [&](const char* name, const char* help, double v) {
    std::snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s gauge\n%s{%s} %g\n", name, help,
                  name, name, lbl.c_str(), v);
    out += line;
  };
  auto counter = [&](const char* name, const char* help, double v) {
    std::snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s counter\n%s{%s} %g\n", name, help,
                  name, name, lbl.c_str(), v);
    out += line;
  };
  gauge("qwrun:num_requests_waiting", "Requests queued for admission.", double(e.waiting));
  gauge("qwrun:num_requests_running", "Sequences holding KV cache.", double(e.running));
  gauge("qwrun:kv_cache_blocks_total", "KV cache blocks in the pool.", double(e.kv.blocks_total));
  gauge("qwrun:kv_cache_blocks_used", "KV cache blocks in use.", double(e.kv.blocks_used));
  gauge("qwrun:kv_cache_blocks_free", "KV cache blocks no sequence holds (incl. cached).",
        double(e.kv.blocks_total - e.kv.blocks_used));
  gauge("qwrun:kv_cache_blocks_cached",
        "Free KV blocks kept for prefix reuse (reclaimed least recently used first).",
        double(e.kv.blocks_cached));
  gauge("qwrun:kv_cache_usage_perc", "Fraction of KV blocks in use.",
        e.kv.blocks_total ? double(e.kv.blocks_used) / double(e.kv.blocks_total) : 0.0);
  counter("qwrun:prompt_tokens_total", "Prompt tokens processed.", double(e.prompt_tokens));
  counter("qwrun:generation_tokens_total", "Tokens generated.", double(e.generated_tokens));
  counter("qwrun:num_preemptions_total", "Sequences preempted (KV recomputed).",
          double(e.preemptions));
  counter("qwrun:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.",
          double(e.prefix_query_tokens));
  counter("qwrun:prefix_cache_hits_total",
          "Prompt tokens whose KV was reused from the prefix cache (tokens saved).",
          double(e.prefix_hit_tokens));
  gauge("qwrun:prefix_cache_hit_rate", "prefix_cache_hits_total / prefix_cache_queries_total.",
        e.prefix_query_tokens ? double(e.prefix_hit_tokens) / double(e.prefix_query_tokens) : 0.0);
  counter("qwrun:engine_steps_total", "Engine steps run.", double(e.steps));
  counter("qwrun:sampled_rows_total", "Logits rows sampled.", double(e.rows_sampled));
  counter("qwrun:sampled_rows_reduced_total",
          "Logits rows sampled from candidates the backend reduced them to (sampling on the "
          "device) instead of whole vocabulary rows.",
          double(e.rows_sampled_reduced));
  gauge("qwrun:startup_seconds", "Process start to ready.", startup_seconds.load());
  {
    std::lock_guard<std::mutex> lock(mu_);
    out += "# HELP qwrun:http_requests_total HTTP requests by status code.\n"
           "# TYPE qwrun:http_requests_total counter\n";
    for (const auto& [code, n] : requests_by_status_) {
      std::snprintf(line, sizeof line, "qwrun:http_requests_total{%s,status=\"%d\"} %llu\n",
                    lbl.c_str(), code, (unsigned long long)n);
      out += line;
    }
    out += "# HELP qwrun:request_success_total Finished requests by finish reason.\n"
           "# TYPE qwrun:request_success_total counter\n";
    for (const auto& [reason, n] : finishes_) {
      std::snprintf(line, sizeof line,
                    "qwrun:request_success_total{%s,finished_reason=\"%s\"} %llu\n", lbl.c_str(),
                    reason.c_str(), (unsigned long long)n);
      out += line;
    }
  }
  out += "# HELP qwrun:time_to_first_token_seconds Time to first token.\n"
         "# TYPE qwrun:time_to_first_token_seconds histogram\n";
  ttft.render("qwrun:time_to_first_token_seconds", out);
  out += "# HELP qwrun:inter_token_latency_seconds Time between tokens of a sequence.\n"
         "# TYPE qwrun:inter_token_latency_seconds histogram\n";
  itl.render("qwrun:inter_token_latency_seconds", out);
  out += "# HELP qwrun:e2e_request_latency_seconds Request latency.\n"
         "# TYPE qwrun:e2e_request_latency_seconds histogram\n";
  e2e.render("qwrun:e2e_request_latency_seconds", out);
  return out;
}

}  // namespace qw

// Prefill and decode throughput of the CPU executor on an artifact (not a test; the
// figures go to bench/results/cpu_*.json).
//   bench_cpu ARTIFACT [prompt_tokens=128] [decode_tokens=32] [threads=0]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <thread>

#include "artifact/artifact.h"
#include "cpu/cpu_executor.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s ARTIFACT [prompt_tokens] [decode_tokens] [threads]\n", argv[0]);
    return 2;
  }
  const int64_t n_prompt = argc > 2 ? std::atoll(argv[2]) : 128;
  const int64_t n_decode = argc > 3 ? std::atoll(argv[3]) : 32;
  qw::cpu::CpuExecutorOptions opts;
  opts.threads = argc > 4 ? std::atoi(argv[4]) : 0;
  auto art = qw::Artifact::open(argv[1]);
  if (!art.ok()) {
    std::fprintf(stderr, "%s\n", art.status().message().c_str());
    return 1;
  }
  auto ex = qw::cpu::CpuExecutor::create(*art, opts);
  if (!ex.ok()) {
    std::fprintf(stderr, "%s\n", ex.status().message().c_str());
    return 1;
  }
  using Clock = std::chrono::steady_clock;
  std::vector<int32_t> prompt;
  for (int64_t i = 0; i < n_prompt; ++i) prompt.push_back(int32_t((i * 7919 + 13) % 150000));
  std::vector<float> logits;
  qw::StepInput in;
  in.seq = 1;
  in.tokens = prompt;
  // CPU time too: wall time on a shared machine measures the neighbours as well.
  const std::clock_t c0 = std::clock();
  const auto t0 = Clock::now();
  if (auto st = ex.value()->step(std::span<const qw::StepInput>(&in, 1), logits); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.message().c_str());
    return 1;
  }
  const double prefill = std::chrono::duration<double>(Clock::now() - t0).count();
  const double prefill_cpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
  const std::clock_t c1 = std::clock();
  const auto t1 = Clock::now();
  int32_t tok = 0;
  for (int64_t i = 0; i < n_decode; ++i) {
    in.tokens = std::span<const int32_t>(&tok, 1);
    in.start_pos = n_prompt + i;
    if (auto st = ex.value()->step(std::span<const qw::StepInput>(&in, 1), logits); !st.ok()) {
      std::fprintf(stderr, "%s\n", st.message().c_str());
      return 1;
    }
    tok = int32_t(i % 1000);
  }
  const double decode = std::chrono::duration<double>(Clock::now() - t1).count();
  const double decode_cpu = double(std::clock() - c1) / CLOCKS_PER_SEC;
  std::printf(
      "{\n  \"artifact\": \"%s\",\n  \"weight_dtype\": \"%s\",\n  \"tp\": %d,\n  \"device\": "
      "\"%s\",\n"
      "  \"hardware_threads\": %u,\n  \"prompt_tokens\": %lld,\n  \"prefill_seconds\": %.3f,\n"
      "  \"prefill_tokens_per_s\": %.2f,\n  \"decode_tokens\": %lld,\n  \"decode_seconds\": %.3f,\n"
      "  \"decode_tokens_per_s\": %.3f,\n  \"prefill_cpu_seconds\": %.3f,\n"
      "  \"decode_cpu_seconds\": %.3f\n}\n",
      argv[1], std::string(qw::dtype_name(art->weight_dtype())).c_str(), art->tp_size(),
      ex.value()->device_name().c_str(), std::thread::hardware_concurrency(), (long long)n_prompt,
      prefill, double(n_prompt) / prefill, (long long)n_decode, decode, double(n_decode) / decode,
      prefill_cpu, decode_cpu);
  return 0;
}

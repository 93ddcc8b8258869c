// qwgpu: developer tool for the GPU runtime on the device machine.
//   qwgpu startup ART [--method staged-pread|staged-mmap|host-register|plain] [--threads N]
//                 [--chunk-mb N] [--direct] [--no-executor] [--no-graphs] [--sweep]
//                 [--check-device] [--verify] [-o OUT.json]
//   qwgpu logits ART TOKENS.i32 OUT.f32 [--chunk N] [--last N] [--kv-gb G]
//                                                        teacher-forced logits of every position
//                                                        (or of the last N only: long prompts)
//   qwgpu greedy ART TOKENS.i32 N                        greedy continuation (JSON: tokens,
//   margins) qwgpu batch-check ART [--seqs 8] [--steps 24]        batched decode == each sequence
//   alone qwgpu prefix-check ART [--prefix 300] [--steps 16]  prompts sharing a prefix: reusing the
//                                                        cached prefix == recomputing it
//   qwgpu cpu-check ART [--seqs 40]                      GPU logits == the CPU executor's (the
//                                                        oracle), teacher-forced: one prefill
//                                                        of every prompt, then decode steps of
//                                                        1..seqs rows (every GEMM path: own
//                                                        GEMVs, INT4 kernels, cuBLAS)
//   qwgpu sweep ART [-o OUT.json]                         A/B: CUDA-core GEMV vs tensor-core GEMV
//   vs cuBLAS
//                                                        paged prefill attention (graph replay
//                                                        ms per decode bucket, TTFT 128/2048)
//   (TTFT / tokens/s: `qwrun bench ART`)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/cpu_executor.h"
#include "gpu/gpu_executor.h"
#include "gpu/startup_bench.h"
#include "gpu/tp_executor.h"

using namespace qw;
using namespace qw::gpu;
using nlohmann::json;

namespace {

int fail(const Status& s) {
  std::fprintf(stderr, "qwgpu: %s\n", s.message().c_str());
  return 1;
}

std::vector<int32_t> read_tokens(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<int32_t> t(b.size() / 4);
  std::memcpy(t.data(), b.data(), t.size() * 4);
  return t;
}

bool flag(std::vector<std::string>& a, const std::string& name) {
  auto it = std::find(a.begin(), a.end(), name);
  if (it == a.end()) return false;
  a.erase(it);
  return true;
}
std::string opt(std::vector<std::string>& a, const std::string& name, const std::string& def) {
  auto it = std::find(a.begin(), a.end(), name);
  if (it == a.end() || it + 1 == a.end()) return def;
  std::string v = *(it + 1);
  a.erase(it, it + 2);
  return v;
}

// A TP=1 artifact on GPU 0, or a TP=N one over GPUs 0..N-1.
Expected<std::unique_ptr<ModelExecutor>> open_exec(const std::string& path, double kv_gb,
                                                   bool graphs, bool prefix_caching = true) {
  auto a = Artifact::open(path);
  if (!a.ok()) return a.status();
  GpuExecutorOptions o;
  o.kv_cache_gb = kv_gb;
  o.cuda_graphs = graphs;
  o.prefix_caching = prefix_caching;
  auto art = std::make_shared<Artifact>(std::move(*a));
  if (art->tp_size() > 1) {
    QW_ASSIGN_OR_RETURN(auto e, TpGpuExecutor::create(art, o));
    return std::unique_ptr<ModelExecutor>(std::move(e));
  }
  QW_ASSIGN_OR_RETURN(auto e, GpuExecutor::create(art, o));
  return std::unique_ptr<ModelExecutor>(std::move(e));
}

int argmax(const float* v, int64_t n, float* margin) {
  int best = 0;
  float b1 = -INFINITY, b2 = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    if (v[i] > b1) {
      b2 = b1;
      b1 = v[i];
      best = int(i);
    } else if (v[i] > b2) {
      b2 = v[i];
    }
  }
  if (margin) *margin = b1 - b2;
  return best;
}

int cmd_startup(std::vector<std::string> a) {
  StartupBenchOptions o;
  std::string m = opt(a, "--method", "staged-pread");
  if (!parse_load_method(m, &o.load.method)) return fail(Status::Error("unknown --method " + m));
  o.load.threads = std::stoi(opt(a, "--threads", "8"));
  o.load.chunk_bytes = size_t(std::stoi(opt(a, "--chunk-mb", "16"))) << 20;
  o.load.direct_io = flag(a, "--direct");
  o.executor = !flag(a, "--no-executor");
  o.cuda_graphs = !flag(a, "--no-graphs");
  o.sweep_methods = flag(a, "--sweep");
  o.check_device = flag(a, "--check-device");
  o.verify_checksums = flag(a, "--verify");
  o.measure_floors = !flag(a, "--no-floors");
  const std::string out = opt(a, "-o", "");
  if (a.empty()) return fail(Status::Error("startup: artifact path missing"));
  auto r = run_startup_bench(a[0], o);
  if (!r.ok()) return fail(r.status());
  std::cout << r->dump(2) << std::endl;
  if (!out.empty()) std::ofstream(out) << r->dump(2) << "\n";
  return 0;
}

int cmd_logits(std::vector<std::string> a) {
  const int64_t chunk = std::stoll(opt(a, "--chunk", "100000000"));
  const int64_t last = std::stoll(opt(a, "--last", "0"));
  const double kv_gb = std::stod(opt(a, "--kv-gb", "8"));
  if (a.size() < 3) return fail(Status::Error("logits: ART TOKENS OUT"));
  auto e = open_exec(a[0], kv_gb, false);
  if (!e.ok()) return fail(e.status());
  auto toks = read_tokens(a[1]);
  std::ofstream out(a[2], std::ios::binary);
  std::vector<float> lg;
  for (int64_t b = 0; b < int64_t(toks.size()); b += chunk) {
    const int64_t n = std::min<int64_t>(chunk, int64_t(toks.size()) - b);
    StepInput in;
    in.seq = 1;
    in.tokens = std::span<const int32_t>(toks.data() + b, size_t(n));
    in.start_pos = b;
    in.all_logits = last <= 0;
    if (last > 0 && b + n > int64_t(toks.size()) - last) {  // split so the last N are one chunk
      const int64_t head = std::max<int64_t>(0, int64_t(toks.size()) - last - b);
      if (head > 0) {
        in.tokens = std::span<const int32_t>(toks.data() + b, size_t(head));
        in.want_logits = false;
        Status st = (*e)->step(std::span<const StepInput>(&in, 1), lg);
        if (!st.ok()) return fail(st);
      }
      in.tokens = std::span<const int32_t>(toks.data() + b + head, size_t(n - head));
      in.start_pos = b + head;
      in.want_logits = true;
      in.all_logits = true;
    } else if (last > 0) {
      in.want_logits = false;
    }
    const auto t0 = std::chrono::steady_clock::now();
    Status st = (*e)->step(std::span<const StepInput>(&in, 1), lg);
    if (!st.ok()) return fail(st);
    if (last > 0)
      std::printf(
          "chunk at %lld (+%zu tokens): %.1f ms\n", (long long)in.start_pos, in.tokens.size(),
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3);
    out.write(reinterpret_cast<const char*>(lg.data()), std::streamsize(lg.size() * 4));
  }
  std::printf("logits: %zu positions x %lld written to %s\n", toks.size(),
              (long long)(*e)->config().vocab_size, a[2].c_str());
  return 0;
}

int cmd_greedy(std::vector<std::string> a) {
  if (a.size() < 3) return fail(Status::Error("greedy: ART TOKENS N"));
  auto e = open_exec(a[0], 8, true);
  if (!e.ok()) return fail(e.status());
  auto toks = read_tokens(a[1]);
  const int n = std::stoi(a[2]);
  const int64_t V = (*e)->config().vocab_size;
  std::vector<float> lg;
  json out = {{"tokens", json::array()}, {"margins", json::array()}};
  StepInput in;
  in.seq = 7;
  in.tokens = std::span<const int32_t>(toks);
  in.start_pos = 0;
  Status st = (*e)->step(std::span<const StepInput>(&in, 1), lg);
  if (!st.ok()) return fail(st);
  int64_t pos = int64_t(toks.size());
  for (int i = 0; i < n; ++i) {
    float margin = 0;
    int32_t t = argmax(lg.data(), V, &margin);
    out["tokens"].push_back(t);
    out["margins"].push_back(margin);
    if (i + 1 == n) break;
    in.tokens = std::span<const int32_t>(&t, 1);
    in.start_pos = pos++;
    st = (*e)->step(std::span<const StepInput>(&in, 1), lg);
    if (!st.ok()) return fail(st);
  }
  std::cout << out.dump() << std::endl;
  return 0;
}

// Decodes `steps` greedy tokens for each prompt, either all sequences batched in one step
// call or one sequence at a time.
// margins (optional): per sequence and step, the top-1 minus top-2 logit of that step.
Status decode_greedy(ModelExecutor& e, const std::vector<std::vector<int32_t>>& prompts, int steps,
                     bool batched, std::vector<std::vector<int32_t>>* outs,
                     std::vector<std::vector<float>>* margins = nullptr) {
  const int64_t V = e.config().vocab_size;
  outs->assign(prompts.size(), {});
  if (margins) margins->assign(prompts.size(), {});
  auto run = [&](std::vector<size_t> ids) -> Status {
    std::vector<StepInput> ins(ids.size());
    std::vector<int32_t> last(ids.size());
    std::vector<int64_t> pos(ids.size());
    for (size_t k = 0; k < ids.size(); ++k) {
      ins[k].seq = 100 + ids[k];
      ins[k].tokens = std::span<const int32_t>(prompts[ids[k]]);
      ins[k].start_pos = 0;
      pos[k] = int64_t(prompts[ids[k]].size());
    }
    std::vector<float> lg;
    QW_RETURN_IF_ERROR(e.step(ins, lg));
    for (int s = 0; s < steps; ++s) {
      for (size_t k = 0; k < ids.size(); ++k) {
        float m = 0;
        last[k] = argmax(lg.data() + k * size_t(V), V, &m);
        (*outs)[ids[k]].push_back(last[k]);
        if (margins) (*margins)[ids[k]].push_back(m);
        ins[k].tokens = std::span<const int32_t>(&last[k], 1);
        ins[k].start_pos = pos[k]++;
      }
      if (s + 1 == steps) break;
      QW_RETURN_IF_ERROR(e.step(ins, lg));
    }
    for (size_t id : ids) e.release(100 + id);
    return Status::Ok();
  };
  if (batched) {
    std::vector<size_t> all(prompts.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    return run(all);
  }
  for (size_t i = 0; i < prompts.size(); ++i) QW_RETURN_IF_ERROR(run({i}));
  return Status::Ok();
}

int cmd_batch_check(std::vector<std::string> a) {
  const int nseq = std::stoi(opt(a, "--seqs", "8"));
  const int steps = std::stoi(opt(a, "--steps", "24"));
  if (a.empty()) return fail(Status::Error("batch-check: ART"));
  auto e = open_exec(a[0], 8, true);
  if (!e.ok()) return fail(e.status());
  std::mt19937_64 rng(uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(nseq));
  for (int i = 0; i < nseq; ++i) {
    prompts[size_t(i)].resize(size_t(3 + (rng() % 200)));
    for (auto& t : prompts[size_t(i)])
      t = int32_t(rng() % uint64_t(std::min<int64_t>((*e)->config().vocab_size, 150000)));
  }
  std::vector<std::vector<int32_t>> alone, batched;
  std::vector<std::vector<float>> margins;
  Status st = decode_greedy(**e, prompts, steps, false, &alone, &margins);
  if (!st.ok()) return fail(st);
  st = decode_greedy(**e, prompts, steps, true, &batched);
  if (!st.ok()) return fail(st);
  // A batch of 8 may run other kernels than a batch of 1 (tensor-core vs CUDA-core GEMMs),
  // so logits differ in the last bits; a greedy continuation may then differ only where
  // the alone run's top two logits were within kTieMargin (the criterion the GPU checks
  // use against transformers: equal wherever the margin exceeds 1e-2).
  constexpr float kTieMargin = 1e-2f;
  int same = 0, near_tie = 0;
  for (int i = 0; i < nseq; ++i) {
    const auto& a1 = alone[size_t(i)];
    const auto& b1 = batched[size_t(i)];
    if (a1 == b1) {
      ++same;
      continue;
    }
    size_t d = 0;
    while (d < a1.size() && d < b1.size() && a1[d] == b1[d]) ++d;
    const float m = d < margins[size_t(i)].size() ? margins[size_t(i)][d] : 0.f;
    std::printf("sequence %d diverges at step %zu: alone %d, batched %d, alone margin %.4g\n", i, d,
                d < a1.size() ? a1[d] : -1, d < b1.size() ? b1[d] : -1, double(m));
    near_tie += m < kTieMargin;
  }
  std::printf(
      "batch-check: %d/%d sequences identical, %d diverged at a near-tie (margin < %g) (lengths",
      same, nseq, near_tie, double(kTieMargin));
  for (auto& p : prompts) std::printf(" %zu", p.size());
  std::printf(", %d steps)\n", steps);
  return same + near_tie == nseq ? 0 : 2;
}

// Prompts that share a long prefix, run one after another: with prefix caching each reuses
// the blocks of the first; without, each recomputes them. Greedy continuations must agree
// (cuBLAS row blocking differs with the chunk shape, so logits agree to rounding only).
int cmd_prefix_check(std::vector<std::string> a) {
  const int prefix = std::stoi(opt(a, "--prefix", "300"));
  const int steps = std::stoi(opt(a, "--steps", "16"));
  if (a.empty()) return fail(Status::Error("prefix-check: ART"));
  std::mt19937_64 rng(uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()));
  const int nprompts = 4;
  std::vector<std::vector<int32_t>> prompts(nprompts);
  std::vector<int32_t> shared(static_cast<size_t>(prefix));
  for (auto& t : shared) t = int32_t(rng() % 150000);
  for (auto& p : prompts) {
    p = shared;
    p.resize(shared.size() + 5 + rng() % 40);
    for (size_t i = shared.size(); i < p.size(); ++i) p[i] = int32_t(rng() % 150000);
  }
  auto run_all = [&](bool caching, std::vector<std::vector<int32_t>>* outs,
                     std::vector<float>* first_logits, int64_t* reused_total) -> Status {
    QW_ASSIGN_OR_RETURN(auto e, open_exec(a[0], 2, true, caching));
    const int64_t V = e->config().vocab_size;
    outs->assign(prompts.size(), {});
    first_logits->clear();
    *reused_total = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      const SeqId seq = 10 + i;
      const int64_t reused = e->attach_prefix(seq, prompts[i]);
      *reused_total += reused;
      StepInput in;
      in.seq = seq;
      in.tokens = std::span<const int32_t>(prompts[i]).subspan(size_t(reused));
      in.start_pos = reused;
      std::vector<float> lg;
      QW_RETURN_IF_ERROR(e->step(std::span<const StepInput>(&in, 1), lg));
      first_logits->insert(first_logits->end(), lg.begin(), lg.begin() + V);
      int64_t pos = int64_t(prompts[i].size());
      int32_t t = 0;
      for (int s = 0; s < steps; ++s) {
        t = argmax(lg.data(), V, nullptr);
        (*outs)[i].push_back(t);
        in.tokens = std::span<const int32_t>(&t, 1);
        in.start_pos = pos++;
        QW_RETURN_IF_ERROR(e->step(std::span<const StepInput>(&in, 1), lg));
      }
      e->release(seq);
    }
    return Status::Ok();
  };
  std::vector<std::vector<int32_t>> on, off;
  std::vector<float> lg_on, lg_off;
  int64_t reused_on = 0, reused_off = 0;
  Status st = run_all(false, &off, &lg_off, &reused_off);
  if (st.ok()) st = run_all(true, &on, &lg_on, &reused_on);
  if (!st.ok()) return fail(st);
  double worst = 0, scale = 0;
  for (size_t i = 0; i < lg_on.size(); ++i) {
    worst = std::max(worst, double(std::fabs(lg_on[i] - lg_off[i])));
    scale = std::max(scale, double(std::fabs(lg_off[i])));
  }
  int same = 0;
  for (size_t i = 0; i < prompts.size(); ++i) same += on[i] == off[i];
  const int64_t expect = int64_t(prompts.size() - 1) * (prefix / 32) * 32;
  std::printf(
      "prefix-check: reused %lld prompt tokens (expected >= %lld), greedy %d/%d identical, "
      "max |dlogit| %.3g (max |logit| %.3g)\n",
      (long long)reused_on, (long long)expect, same, nprompts, worst, scale);
  return reused_on >= expect && reused_off == 0 && same == nprompts && worst <= 2e-2 * scale ? 0
                                                                                             : 2;
}

// The same teacher-forced steps on the GPU and on the CPU executor: a prefill of every prompt
// in one step (a long pass), then decode steps over the first b sequences for b from 1 up
// (graph replays, chunked INT4 launches, cuBLAS rows). Passes when every row's argmax agrees
// or is within rounding of the runner-up, and the largest logit difference is within 2% of
// the largest logit (fp16 activations on the GPU vs fp32 on the CPU).
int cmd_cpu_check(std::vector<std::string> a) {
  const int nseq = std::max(1, std::stoi(opt(a, "--seqs", "40")));
  if (a.empty()) return fail(Status::Error("cpu-check: ART"));
  auto art = Artifact::open(a[0]);
  if (!art.ok()) return fail(art.status());
  auto cpu = cpu::CpuExecutor::create(*art);
  if (!cpu.ok()) return fail(cpu.status());
  auto gpu = open_exec(a[0], 2, true);
  if (!gpu.ok()) return fail(gpu.status());
  const int64_t V = (*gpu)->config().vocab_size;
  std::mt19937_64 rng(uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()));
  const int64_t vocab = std::min<int64_t>(V, 150000);
  std::vector<std::vector<int32_t>> seqs(static_cast<size_t>(nseq));
  for (auto& p : seqs) {
    p.resize(size_t(5 + rng() % 120));
    for (auto& t : p) t = int32_t(rng() % uint64_t(vocab));
  }
  double worst = 0, scale = 0;
  int rows = 0, agree = 0;
  auto compare = [&](const std::vector<float>& g, const std::vector<float>& c, size_t n) {
    for (size_t r = 0; r < n; ++r) {
      const float* gr = g.data() + r * size_t(V);
      const float* cr = c.data() + r * size_t(V);
      float cm = 0;
      const int ga = argmax(gr, V, nullptr), ca = argmax(cr, V, &cm);
      // A different argmax is rounding only when the CPU's top two are that close.
      agree += ga == ca || double(cm) <= 2 * worst + 1e-3;
      for (int64_t i = 0; i < V; ++i) {
        worst = std::max(worst, double(std::fabs(gr[i] - cr[i])));
        scale = std::max(scale, double(std::fabs(cr[i])));
      }
      ++rows;
    }
  };
  std::vector<int64_t> pos(seqs.size());
  std::vector<StepInput> ins(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    ins[i].seq = int64_t(1000 + i);
    ins[i].tokens = seqs[i];
    pos[i] = int64_t(seqs[i].size());
  }
  std::vector<float> lg, lc;
  Status st = (*gpu)->step(ins, lg);
  if (st.ok()) st = (*cpu)->step(ins, lc);
  if (!st.ok()) return fail(st);
  compare(lg, lc, seqs.size());
  std::vector<int32_t> next(seqs.size());
  std::vector<int> batches;
  for (int b : {1, 2, 3, 5, 8, 9, 16, 17, 24, 33, 40, 64})
    if (b <= nseq) batches.push_back(b);
  if (batches.back() != nseq) batches.push_back(nseq);
  for (int b : batches) {
    for (int i = 0; i < b; ++i) {
      next[size_t(i)] = int32_t(rng() % uint64_t(vocab));
      ins[size_t(i)].tokens = std::span<const int32_t>(&next[size_t(i)], 1);
      ins[size_t(i)].start_pos = pos[size_t(i)]++;
    }
    const std::span<const StepInput> step(ins.data(), size_t(b));
    st = (*gpu)->step(step, lg);
    if (st.ok()) st = (*cpu)->step(step, lc);
    if (!st.ok()) return fail(st);
    compare(lg, lc, size_t(b));
  }
  std::printf(
      "cpu-check: %d rows (prefill of %d prompts, decode batches up to %d), argmax agree %d/%d, "
      "max |dlogit| %.3g (max |logit| %.3g) on %s\n",
      rows, nseq, nseq, agree, rows, worst, scale, (*gpu)->device_name().c_str());
  return agree == rows && worst <= 2e-2 * scale ? 0 : 2;
}

// A/B of the executor's options on one artifact, in one process.
int cmd_sweep(std::vector<std::string> a) {
  const std::string out = opt(a, "-o", "");
  if (a.empty()) return fail(Status::Error("sweep: ART"));
  auto art = Artifact::open(a[0]);
  if (!art.ok()) return fail(art.status());
  auto shared = std::make_shared<Artifact>(std::move(*art));
  struct Cfg {
    const char* name;
    bool pdl;
    int gemv;
    int tc;
    bool flash;
    int ks = 0;  // GEMV warps per row pair (0: planned)
  };
  const Cfg cfgs[] = {{"defaults: PDL, gemv<=4, tc<=32", true, 4, 32, true},
                      {"gemv<=4, tensor cores <=32", false, 4, 32, true},
                      {"  same, GEMV ks 1", false, 4, 32, true, 1},
                      {"  same, GEMV ks 2", false, 4, 32, true, 2},
                      {"  same, GEMV ks 4", false, 4, 32, true, 4},
                      {"gemv<=1, tensor cores <=32", false, 1, 32, true},
                      {"tensor cores <=32", false, 0, 32, true},
                      {"gemv<=4, cuBLAS above", false, 4, 0, true},
                      {"cuBLAS for every batch", false, 0, 0, true}};
  json res = json::array();
  std::mt19937_64 rng(12345);
  for (const Cfg& c : cfgs) {
    GpuExecutorOptions o;
    o.kv_cache_gb = 8;
    o.pdl = c.pdl;
    o.gemv_max_rows = c.gemv;
    o.tc_max_rows = c.tc;
    o.flash_attention = c.flash;
    o.gemv_warps_per_pair = c.ks;
    setenv("QW_GEMV_KS", std::to_string(c.ks).c_str(), 1);
    setenv("QW_PDL", c.pdl ? "1" : "0", 1);
    setenv("QW_GEMV_MAX_ROWS", std::to_string(c.gemv).c_str(), 1);
    setenv("QW_TC_MAX_ROWS", std::to_string(c.tc).c_str(), 1);
    setenv("QW_ATTN", c.flash ? "flash" : "paged", 1);
    auto e = GpuExecutor::create(shared, o);
    if (!e.ok()) return fail(e.status());
    json r = {{"config", c.name}};
    for (int b : (*e)->graph_buckets()) {
      auto ms = (*e)->time_graph_replay(b, 20);
      if (!ms.ok()) return fail(ms.status());
      r["graph_replay_ms"][std::to_string(b)] = *ms;
    }
    for (int64_t n : {128, 2048}) {
      std::vector<int32_t> p(static_cast<size_t>(n));
      for (auto& t : p) t = int32_t(rng() % 150000);
      std::vector<double> ts;
      std::vector<float> lg;
      for (int rep = 0; rep < 4; ++rep) {
        StepInput in;
        in.seq = 5;
        in.tokens = p;
        const auto t0 = std::chrono::steady_clock::now();
        Status st = (*e)->step(std::span<const StepInput>(&in, 1), lg);
        if (!st.ok()) return fail(st);
        if (rep > 0)
          ts.push_back(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3);
        (*e)->release(5);
      }
      std::sort(ts.begin(), ts.end());
      r["ttft_ms"][std::to_string(n)] = ts[ts.size() / 2];
    }
    std::printf("%-28s", c.name);
    for (int b : (*e)->graph_buckets())
      std::printf(" b%d %.3f", b, r["graph_replay_ms"][std::to_string(b)].get<double>());
    std::printf(" ms  ttft128 %.2f ms  ttft2048 %.2f ms\n", r["ttft_ms"]["128"].get<double>(),
                r["ttft_ms"]["2048"].get<double>());
    std::fflush(stdout);
    res.push_back(r);
  }
  unsetenv("QW_PDL");
  unsetenv("QW_GEMV_KS");
  unsetenv("QW_GEMV_MAX_ROWS");
  unsetenv("QW_TC_MAX_ROWS");
  unsetenv("QW_ATTN");
  if (!out.empty()) std::ofstream(out) << res.dump(2) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: qwgpu startup|logits|greedy|batch-check|prefix-check|cpu-check|sweep "
                 "ARTIFACT ...\n");
    return 2;
  }
  const std::string cmd = argv[1];
  std::vector<std::string> a(argv + 2, argv + argc);
  if (cmd == "startup") return cmd_startup(a);
  if (cmd == "logits") return cmd_logits(a);
  if (cmd == "greedy") return cmd_greedy(a);
  if (cmd == "batch-check") return cmd_batch_check(a);
  if (cmd == "sweep") return cmd_sweep(a);
  if (cmd == "prefix-check") return cmd_prefix_check(a);
  if (cmd == "cpu-check") return cmd_cpu_check(a);
  std::fprintf(stderr, "qwgpu: unknown command %s\n", cmd.c_str());
  return 2;
}

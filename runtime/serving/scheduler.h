// The batching policy: which sequences advance in the next step and by how many tokens.
// Decodes first (each running sequence one token), then prefill chunks in arrival order
// under a per-step token budget, so a long prompt never stalls the others (chunked
// prefill). When the KV cache cannot take a decode token, the most recently admitted
// sequence is preempted (its cache dropped, recomputed later) so older requests finish:
// FCFS with preemption bounds starvation. An admitted sequence first takes whatever
// prefix of its tokens the KV cache already holds (prefix caching), then prefills the rest.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "engine/executor.h"
#include "serving/sequence.h"

namespace qw {

struct SchedulerOptions {
  int64_t max_batch_tokens = 2048;  // tokens per step (decode + prefill chunks)
  int64_t max_running = 64;         // sequences holding KV at once
};

struct StepPlan {
  struct Chunk {
    Sequence* seq;
    int64_t n;  // tokens of seq->tokens from seq->cached
  };
  std::vector<Chunk> chunks;
  std::vector<Sequence*> preempted;  // KV released; they went back to the waiting queue
  struct Admission {
    Sequence* seq;
    int64_t reused;  // prompt tokens whose KV came from the prefix cache
  };
  std::vector<Admission> admitted;  // moved from waiting to running in this plan
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerOptions o) : opts_(o) {}
  const SchedulerOptions& options() const { return opts_; }
  // `running` sequences hold KV (some still prefilling); `waiting` are queued in arrival
  // order. Moves admitted ones from waiting to running and preempted ones back.
  StepPlan plan(std::vector<Sequence*>& running, std::deque<Sequence*>& waiting,
                ModelExecutor& model);

 private:
  SchedulerOptions opts_;
};

}  // namespace qw

// The serving engine: one thread owns the ModelExecutor and runs steps over every active
// sequence (continuous batching). Requests join at step boundaries, leave when done or
// cancelled, and hear about their tokens through a sink.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/thread_pool.h"
#include "engine/executor.h"
#include "serving/scheduler.h"
#include "serving/sequence.h"
#include "tokenizer/tokenizer.h"

namespace qw {

struct EngineOptions {
  SchedulerOptions scheduler;
  int64_t max_waiting = 256;  // queued requests before submit() refuses (HTTP 429)
  // Threads that sample the sequences of a step in parallel (a 152K-entry vocabulary
  // row per sequence); 0: up to 8 of the machine's cores.
  int sampling_threads = 0;
};

struct EngineStats {
  int64_t waiting = 0;
  int64_t running = 0;
  KvUsage kv;
  uint64_t steps = 0;
  uint64_t prompt_tokens = 0;      // prompt tokens admitted (recomputation not counted)
  uint64_t generated_tokens = 0;
  uint64_t preemptions = 0;
  uint64_t prefix_query_tokens = 0;  // prompt tokens looked up in the prefix cache
  uint64_t prefix_hit_tokens = 0;    // of those, tokens whose KV was reused (not recomputed)
  uint64_t rows_sampled = 0;          // logits rows sampled
  uint64_t rows_sampled_reduced = 0;  // of those, from candidates reduced by the backend
};

// Observers for metrics (called on the engine thread).
struct EngineObserver {
  std::function<void(double seconds)> on_first_token;        // time to first token
  std::function<void(double seconds)> on_inter_token;        // gap between tokens
  std::function<void(const std::string& reason)> on_finish;  // finish reason
};

class Engine {
 public:
  Engine(ModelExecutor& model, const Tokenizer& tokenizer, EngineOptions opts,
         EngineObserver observer = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  enum class SubmitError { QueueFull, ShuttingDown };
  // Queues a request; its sink hears every token and exactly one finished event.
  // Returns the sequence id, or why it was refused.
  std::variant<SeqId, SubmitError> submit(RequestParams params, RequestSink sink);
  // Cancels a request (a disconnected client): its KV blocks are freed at the next step.
  void cancel(SeqId id);
  void cancel_all();
  // Stops taking requests; running ones continue until they finish or cancel_all().
  void stop_accepting();
  bool idle() const;
  EngineStats stats() const;
  const ModelExecutor& model() const { return model_; }

 private:
  void loop();
  void run_step();
  void finish(Sequence* s, const std::string& reason, const std::string& error = {});
  void emit_token(Sequence* s, const SampleResult& r);

  ModelExecutor& model_;
  const Tokenizer& tokenizer_;
  EngineOptions opts_;
  EngineObserver observer_;
  Scheduler scheduler_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> inbox_;  // submitted, not yet seen by the loop
  std::unordered_map<SeqId, Sequence*> live_;    // every sequence the loop owns
  std::vector<std::unique_ptr<Sequence>> owned_;
  std::vector<Sequence*> running_;
  std::deque<Sequence*> waiting_;
  SeqId next_id_ = 1;
  bool accepting_ = true;
  bool stop_ = false;
  EngineStats stats_;
  std::vector<float> masked_;  // one row of grammar-masked logits
  std::vector<CandidateRequest> requests_;  // per logits row of the step
  StepRows step_rows_;
  ThreadPool sampling_pool_;
  std::vector<SampleResult> sampled_;  // per chunk of the step, unconstrained sequences
  std::thread thread_;
};

}  // namespace qw

#include "serving/scheduler.h"

#include <algorithm>

namespace qw {

StepPlan Scheduler::plan(std::vector<Sequence*>& running, std::deque<Sequence*>& waiting,
                         ModelExecutor& model) {
  StepPlan p;
  int64_t budget = opts_.max_batch_tokens;

  // 1. Decodes. A sequence whose next token does not fit forces the newest other running
  //    sequence out (or itself, if it is the newest).
  for (size_t i = 0; i < running.size() && budget > 0;) {
    Sequence* s = running[i];
    if (s->pending() != 1) {
      ++i;
      continue;
    }
    if (model.can_append(s->id, 1)) {
      p.chunks.push_back({s, 1});
      --budget;
      ++i;
      continue;
    }
    Sequence* victim = running.back();
    model.release(victim->id);
    victim->cached = 0;
    ++victim->preemptions;
    p.preempted.push_back(victim);
    waiting.push_front(victim);
    running.pop_back();
    // Drop a chunk already planned for the victim.
    p.chunks.erase(std::remove_if(p.chunks.begin(), p.chunks.end(),
                                  [&](const StepPlan::Chunk& c) { return c.seq == victim; }),
                   p.chunks.end());
    if (victim == s) continue;  // i now indexes the next sequence
  }

  // 2. Prefill of sequences already admitted, then admission of waiting ones (FCFS:
  //    nothing jumps ahead of a waiting sequence that does not fit).
  auto prefill = [&](Sequence* s) -> bool {
    const int64_t n = std::min(s->pending(), budget);
    if (n <= 0 || !model.can_append(s->id, n)) return false;
    p.chunks.push_back({s, n});
    budget -= n;
    return true;
  };
  for (Sequence* s : running)
    if (s->pending() > 1 && budget > 0) prefill(s);
  while (!waiting.empty() && budget > 0 && int64_t(running.size()) < opts_.max_running) {
    Sequence* s = waiting.front();
    const int64_t reused = s->cached == 0 ? model.attach_prefix(s->id, s->tokens) : 0;
    s->cached += reused;
    if (!prefill(s)) {
      // Hand the attached blocks back: a waiting sequence holds no KV, so preemption
      // (which only looks at running ones) can always free what decodes need.
      if (reused > 0) {
        model.release(s->id);
        s->cached = 0;
      }
      break;
    }
    waiting.pop_front();
    running.push_back(s);
    p.admitted.push_back({s, reused});
  }
  return p;
}

}  // namespace qw

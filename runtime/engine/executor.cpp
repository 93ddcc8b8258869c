// ModelExecutor's default step_reduced(): whole rows, reduced on the host when asked.
#include "engine/executor.h"

namespace qw {

Status ModelExecutor::step_reduced(std::span<const StepInput> inputs,
                                   std::span<const CandidateRequest> requests, StepRows& out) {
  QW_ASSIGN_OR_RETURN(out.rows, step_view(inputs));
  const size_t V = size_t(config().vocab_size);
  const size_t n = out.rows.size() / V;
  if (requests.size() != n)
    return Errorf("step_reduced: %zu candidate requests for %zu logits rows", requests.size(), n);
  out.candidates.resize(n);
  out.row_index.resize(n);
  for (size_t i = 0; i < n; ++i) {
    out.row_index[i] = int64_t(i);
    out.candidates[i].complete = false;
    if (!reduce_rows_on_host_ || requests[i].k <= 0) continue;
    reduce_row_to_candidates(out.rows.subspan(i * V, V), requests[i], out.candidates[i]);
    if (out.candidates[i].complete) out.row_index[i] = -1;
  }
  return Status::Ok();
}

}  // namespace qw

#include "serving/constrained_sampling.h"

#include <algorithm>
#include <limits>

namespace qw {

SampleResult sample_with_grammar(GrammarMatcher& m, Sampler& sampler,
                                 std::span<const float> logits, std::span<const int32_t> context,
                                 std::span<const int32_t> generated, std::span<const int64_t> eos,
                                 int64_t remaining, std::vector<float>& scratch) {
  // Rejections before falling back to the forced path: a token that would overrun the
  // budget is rare until the budget is nearly spent, where the forced path takes over.
  constexpr int kMaxRejections = 8;
  if (!m.forcing() && int64_t(m.completion_tokens()) + 1 >= remaining) m.force_completion();
  m.apply(logits, eos, scratch);
  for (int attempt = 0;; ++attempt) {
    SampleResult r = sampler.sample(scratch, context, generated);
    const bool is_eos = std::find(eos.begin(), eos.end(), int64_t(r.token)) != eos.end();
    if (m.forcing() || is_eos) return r;
    const auto after = m.completion_tokens_after(r.token);
    if (after && int64_t(*after) + 1 <= remaining - 1) return r;
    scratch[size_t(r.token)] = -std::numeric_limits<float>::infinity();
    if (attempt + 1 >= kMaxRejections) {
      m.force_completion();
      m.apply(logits, eos, scratch);
    }
  }
}

}  // namespace qw

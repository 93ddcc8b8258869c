// Sampling under a grammar with a token budget: the sampled token must keep the text a
// valid prefix AND leave enough tokens to finish it. The shortest completion is counted in
// tokens (spelled longest token first); once only it and eos fit in what is left, the
// matcher writes exactly that plan, so a reply cut by max_tokens is still complete JSON.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "engine/sampler.h"
#include "structured/grammar.h"

namespace qw {

// remaining: tokens this sequence may still generate, this one included.
SampleResult sample_with_grammar(GrammarMatcher& m, Sampler& sampler,
                                 std::span<const float> logits, std::span<const int32_t> context,
                                 std::span<const int32_t> generated, std::span<const int64_t> eos,
                                 int64_t remaining, std::vector<float>& scratch);

}  // namespace qw

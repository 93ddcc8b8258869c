#include "cli/sampling_flags.h"

#include <algorithm>
#include <random>

namespace qw::cli {

void SamplingFlags::add_to(CLI::App* c) {
  c->add_option("--max-tokens,-n", max_tokens, "Most tokens to generate")->capture_default_str();
  c->add_option("--temperature,-t", temperature,
                "0 = greedy (default: the artifact's generation_config)");
  c->add_option("--top-p", top_p, "Nucleus sampling mass");
  c->add_option("--top-k", top_k, "Keep the k most likely tokens (0 = off)");
  c->add_option("--repetition-penalty", repetition_penalty, "HF repetition penalty (1 = off)");
  c->add_option("--seed", seed, "Random seed (same seed, same text)");
  c->add_option("--stop", stop, "Stop string (repeatable)");
  c->add_option("--system", system, "System prompt for --chat / chat");
  c->add_option("--tp", load.tp,
                "GPUs for tensor parallelism; must equal the artifact's degree (qwc compile --tp N), "
                "which is the default. Ranks use GPUs 0..N-1 and need NCCL (libnccl.so.2)")
      ->check(CLI::Range(1, 64));
  c->add_option("--device", load.device, "auto | cpu | gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))->capture_default_str();
  c->add_option("--threads", load.threads, "CPU threads (0 = all cores)");
  c->add_option("--kv-cache-gb", load.kv_cache_gb, "GPU KV cache size (0 = backend default)");
  c->add_flag("--verify", load.verify, "Hash every artifact section first (reads the whole file)");
}

GenerateRequest SamplingFlags::request_for(const LoadedModel& m) const {
  GenerateRequest r;
  r.sampling = SamplingParams::from_defaults(m.artifact->generation());
  if (temperature) r.sampling.temperature = *temperature;
  if (top_p) r.sampling.top_p = *top_p;
  if (top_k) r.sampling.top_k = *top_k;
  if (repetition_penalty) r.sampling.repetition_penalty = *repetition_penalty;
  r.sampling.seed = seed ? *seed : std::random_device{}();
  r.max_new_tokens = max_tokens;
  r.stop = stop;
  r.eos_ids = m.artifact->generation().eos_token_ids;
  for (int32_t id : m.tokenizer.eos_ids())
    if (std::find(r.eos_ids.begin(), r.eos_ids.end(), id) == r.eos_ids.end()) r.eos_ids.push_back(id);
  return r;
}

}  // namespace qw::cli

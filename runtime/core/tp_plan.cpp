#include "core/model_config.h"

namespace qw {

Expected<TpPlan> make_tp_plan(const ModelConfig& c, int64_t tp) {
  if (tp < 1 || (tp & (tp - 1)) != 0)
    return Errorf("tensor-parallel degree %lld: must be a power of two >= 1", (long long)tp);
  if (c.num_attention_heads % tp != 0)
    return Errorf("num_attention_heads=%lld is not divisible by tp=%lld",
                  (long long)c.num_attention_heads, (long long)tp);
  if (c.num_key_value_heads >= tp ? c.num_key_value_heads % tp != 0
                                  : tp % c.num_key_value_heads != 0)
    return Errorf("num_key_value_heads=%lld and tp=%lld: one must divide the other",
                  (long long)c.num_key_value_heads, (long long)tp);
  if (c.intermediate_size % tp != 0)
    return Errorf("intermediate_size=%lld is not divisible by tp=%lld",
                  (long long)c.intermediate_size, (long long)tp);
  TpPlan p;
  p.tp = tp;
  p.num_heads = c.num_attention_heads;
  p.num_kv_heads = c.num_key_value_heads;
  p.q_heads_per_rank = c.num_attention_heads / tp;
  // Fewer KV heads than ranks: each rank keeps (a replica of) the one KV head its q heads use.
  p.kv_heads_per_rank = c.num_key_value_heads >= tp ? c.num_key_value_heads / tp : 1;
  p.intermediate_per_rank = c.intermediate_size / tp;
  p.vocab_per_rank = (c.vocab_size + tp - 1) / tp;
  return p;
}

}  // namespace qw

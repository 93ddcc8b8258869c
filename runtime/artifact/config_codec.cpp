#include "artifact/config_codec.h"

namespace qw {

namespace {
std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }
std::vector<int64_t> longs(const flatbuffers::Vector<int64_t>* v) {
  return v ? std::vector<int64_t>(v->begin(), v->end()) : std::vector<int64_t>();
}
}  // namespace

flatbuffers::Offset<fb::ModelConfig> encode_model_config(flatbuffers::FlatBufferBuilder& b,
                                                         const ModelConfig& c) {
  flatbuffers::Offset<fb::RopeScaling> rope;
  if (!c.rope_scaling.rope_type.empty()) {
    const auto& r = c.rope_scaling;
    rope = fb::CreateRopeScalingDirect(b, r.rope_type.c_str(), r.factor,
                                       r.original_max_position_embeddings, r.beta_fast,
                                       r.beta_slow, r.attention_factor, r.truncate);
  }
  return fb::CreateModelConfigDirect(
      b, c.architecture.c_str(), c.model_type.c_str(), c.hidden_size, c.intermediate_size,
      c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
      c.vocab_size, c.max_position_embeddings, c.rms_norm_eps, c.rope_theta, rope,
      c.tie_word_embeddings, c.use_sliding_window, c.sliding_window, c.max_window_layers,
      c.hidden_act.c_str(), c.source_torch_dtype.c_str(), c.bos_token_id, &c.eos_token_ids,
      c.pad_token_id);
}

flatbuffers::Offset<fb::GenerationDefaults> encode_generation(flatbuffers::FlatBufferBuilder& b,
                                                              const GenerationDefaults& g) {
  return fb::CreateGenerationDefaultsDirect(b, g.do_sample, g.temperature, g.top_p, g.top_k,
                                            g.repetition_penalty, g.max_new_tokens,
                                            g.bos_token_id, &g.eos_token_ids, g.pad_token_id);
}

ModelConfig decode_model_config(const fb::ModelConfig& c) {
  ModelConfig m;
  m.architecture = str(c.architecture());
  m.model_type = str(c.model_type());
  m.hidden_size = c.hidden_size();
  m.intermediate_size = c.intermediate_size();
  m.num_hidden_layers = c.num_hidden_layers();
  m.num_attention_heads = c.num_attention_heads();
  m.num_key_value_heads = c.num_key_value_heads();
  m.head_dim = c.head_dim();
  m.vocab_size = c.vocab_size();
  m.max_position_embeddings = c.max_position_embeddings();
  m.rms_norm_eps = c.rms_norm_eps();
  m.rope_theta = c.rope_theta();
  if (const auto* r = c.rope_scaling()) {
    m.rope_scaling.rope_type = str(r->rope_type());
    m.rope_scaling.factor = r->factor();
    m.rope_scaling.original_max_position_embeddings = r->original_max_position_embeddings();
    m.rope_scaling.beta_fast = r->beta_fast();
    m.rope_scaling.beta_slow = r->beta_slow();
    m.rope_scaling.attention_factor = r->attention_factor();
    m.rope_scaling.truncate = r->truncate();
  }
  m.tie_word_embeddings = c.tie_word_embeddings();
  m.use_sliding_window = c.use_sliding_window();
  m.sliding_window = c.sliding_window();
  m.max_window_layers = c.max_window_layers();
  m.hidden_act = str(c.hidden_act());
  m.source_torch_dtype = str(c.source_torch_dtype());
  m.bos_token_id = c.bos_token_id();
  m.eos_token_ids = longs(c.eos_token_ids());
  m.pad_token_id = c.pad_token_id();
  return m;
}

GenerationDefaults decode_generation(const fb::GenerationDefaults* g) {
  GenerationDefaults d;
  if (g == nullptr) return d;
  d.do_sample = g->do_sample();
  d.temperature = g->temperature();
  d.top_p = g->top_p();
  d.top_k = g->top_k();
  d.repetition_penalty = g->repetition_penalty();
  d.max_new_tokens = g->max_new_tokens();
  d.bos_token_id = g->bos_token_id();
  d.eos_token_ids = longs(g->eos_token_ids());
  d.pad_token_id = g->pad_token_id();
  return d;
}

}  // namespace qw

// ModelConfig / GenerationDefaults <-> their FlatBuffers tables (one place for the mapping).
#pragma once
#include "core/model_config.h"
#include "qw_schema/artifact_generated.h"

namespace qw {

flatbuffers::Offset<fb::ModelConfig> encode_model_config(flatbuffers::FlatBufferBuilder& b,
                                                         const ModelConfig& c);
flatbuffers::Offset<fb::GenerationDefaults> encode_generation(flatbuffers::FlatBufferBuilder& b,
                                                              const GenerationDefaults& g);
ModelConfig decode_model_config(const fb::ModelConfig& c);
GenerationDefaults decode_generation(const fb::GenerationDefaults* g);

}  // namespace qw

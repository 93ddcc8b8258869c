// qwc inspect: what an artifact holds (config, sections, tensors), as text or JSON.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "artifact/artifact.h"

namespace qw {

nlohmann::ordered_json describe_artifact(const Artifact& a);
std::string format_artifact_text(const Artifact& a);

}  // namespace qw

// metadata.json <-> ModelMetadata. Strict: every missing or mistyped key, an
// unknown dtype, a duplicate name or a default_method that is not a method is
// a MetadataError whose message names the key path ("methods[1].inputs[0].dtype")
// and what was expected. Unknown keys are kept in `extra` and written back.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "staticllm/model_metadata.h"

namespace staticllm {

ModelMetadata metadata_from_json(const nlohmann::json& doc);
nlohmann::json metadata_to_json(const ModelMetadata& metadata);

// Text forms; parse errors of the text itself are MetadataErrors too.
ModelMetadata metadata_from_string(const std::string& text);
std::string metadata_to_string(const ModelMetadata& metadata);  // pretty, 2-space indent

ModelMetadata load_metadata_file(const std::string& path);  // BundleError if unreadable
void save_metadata_file(const ModelMetadata& metadata, const std::string& path);

}  // namespace staticllm

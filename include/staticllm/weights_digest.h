// weight.bin against the SHA-256 recorded in metadata.json at export and
// import ("weights_sha256"): Runtime::load(..., verify) and `staticllm
// inspect --verify` check it, so a weight file changed after export is found
// before it silently changes results.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "staticllm/model_metadata.h"

namespace staticllm {

// BundleError unless `size` bytes at `data` (weight.bin as loaded: mapped or
// read) hash to metadata.weights_sha256, or when the bundle records no hash.
void check_weights_digest(const ModelMetadata& metadata, const std::string& weights_path, const uint8_t* data,
                          size_t size);

// The same check reading the file at `weights_path`.
void check_weights_file(const ModelMetadata& metadata, const std::string& weights_path);

// SHA-256 of the file's bytes as 64 lowercase hex digits; BundleError if it cannot be read.
std::string file_sha256(const std::string& path);

}  // namespace staticllm

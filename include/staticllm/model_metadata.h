// The ModelMetadata document stored as metadata.json in every bundle.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "staticllm/tensor.h"

namespace staticllm {

constexpr int kMetadataFormatVersion = 1;

// One named input, output or state of a method.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kFloat32;
  Shape shape;
  nlohmann::json extra = nlohmann::json::object();  // unknown keys, kept on round trip
};

struct MethodMetadata {
  std::string name;                 // the name callers use: "decode", "prefill", "forward"
  std::string function_name;        // the Core ML function inside the package ("main" for single-function)
  std::vector<TensorSpec> inputs;   // in call order
  std::vector<TensorSpec> outputs;  // in result order
  std::vector<TensorSpec> states;   // Core ML states (MLState), may be empty
  nlohmann::json extra = nlohmann::json::object();

  const TensorSpec* find_input(const std::string& name) const;
  const TensorSpec* find_output(const std::string& name) const;
};

struct ModelMetadata {
  int format_version = kMetadataFormatVersion;
  std::string identifier;
  bool multifunction = false;  // the package holds several Core ML functions
  std::string default_method;
  std::vector<MethodMetadata> methods;
  // The generation loop's section; kept as JSON because only Python reads it.
  // Absent (null) for bundles imported from arbitrary packages.
  nlohmann::json llm;
  // SHA-256 of the package's weights/weight.bin as 64 lowercase hex digits,
  // recorded at export and import ("weights_sha256"); absent in older bundles.
  std::optional<std::string> weights_sha256;
  nlohmann::json extra = nlohmann::json::object();  // unknown top-level keys

  std::vector<std::string> method_names() const;
  const MethodMetadata* find_method(const std::string& name) const;
  // Throws MetadataError naming the method and the known ones.
  const MethodMetadata& method(const std::string& name) const;
};

}  // namespace staticllm

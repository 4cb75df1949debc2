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

// The bounds of one dimension of a range-flexible input; upper is
// kFlexibleDim when unbounded.
struct DimRange {
  int64_t lower = 1;
  int64_t upper = kFlexibleDim;
  bool operator==(const DimRange& o) const { return lower == o.lower && upper == o.upper; }
};

// One named input, output or state of a method. Most are fixed (`shape`
// alone). A flexible input (a Core ML shapeRange or enumeratedShapes) has
// kFlexibleDim where its dimensions may vary, the shape it is planned at
// first (`default_shape`) and what it accepts: `shape_range`, one range per
// dimension, or `enumerated_shapes`. An output whose shape is known only at
// run time has kFlexibleDim dimensions, or `any_rank` when not even its rank
// is declared.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kFloat32;
  Shape shape;
  bool any_rank = false;
  Shape default_shape;                              // flexible inputs only
  std::vector<DimRange> shape_range;                // empty, or one per dimension
  std::vector<Shape> enumerated_shapes;             // empty, or the shapes an input accepts
  nlohmann::json extra = nlohmann::json::object();  // unknown keys, kept on round trip

  // True when `shape` holds every dimension (all our LLM bundles' specs).
  bool is_fixed() const;
  // Whether a tensor of shape `s` is one this spec allows.
  bool accepts(const Shape& s) const;
  // What it allows, for messages: "fp32 [1, 1..10]", "fp32 [1, 3] or [2, 5]".
  std::string allowed() const;
  // The shape to plan a flexible input at before any call: `default_shape`,
  // else `shape` (fixed).
  const Shape& planning_shape() const { return default_shape.empty() ? shape : default_shape; }
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

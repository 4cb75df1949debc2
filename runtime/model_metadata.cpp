#include "staticllm/model_metadata.h"

#include <algorithm>

#include "staticllm/errors.h"

namespace staticllm {

namespace {

const TensorSpec* find_spec(const std::vector<TensorSpec>& specs, const std::string& name) {
  for (const auto& s : specs) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::string dims_string(const std::vector<DimRange>& ranges) {
  std::string s = "[";
  for (size_t i = 0; i < ranges.size(); ++i) {
    const DimRange& r = ranges[i];
    s += i ? ", " : "";
    s += r.lower == r.upper ? std::to_string(r.lower)
                            : std::to_string(r.lower) + ".." + (r.upper < 0 ? "" : std::to_string(r.upper));
  }
  return s + "]";
}

std::string flexible_shape_string(const TensorSpec& s) {
  if (s.any_rank) return "any shape";
  std::string out = "[";
  for (size_t i = 0; i < s.shape.size(); ++i) {
    out += i ? ", " : "";
    out += s.shape[i] == kFlexibleDim ? "?" : std::to_string(s.shape[i]);
  }
  return out + "]";
}

}  // namespace

bool TensorSpec::is_fixed() const {
  return !any_rank && std::find(shape.begin(), shape.end(), kFlexibleDim) == shape.end();
}

bool TensorSpec::accepts(const Shape& s) const {
  if (!enumerated_shapes.empty()) {
    return std::find(enumerated_shapes.begin(), enumerated_shapes.end(), s) != enumerated_shapes.end();
  }
  if (any_rank) return true;
  if (s.size() != shape.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (shape[i] != kFlexibleDim && s[i] != shape[i]) return false;
    if (i < shape_range.size()) {
      const DimRange& r = shape_range[i];
      if (s[i] < r.lower || (r.upper != kFlexibleDim && s[i] > r.upper)) return false;
    }
  }
  return true;
}

std::string TensorSpec::allowed() const {
  std::string out = std::string(dtype_name(dtype)) + " ";
  if (!enumerated_shapes.empty()) {
    for (size_t i = 0; i < enumerated_shapes.size(); ++i) {
      out += (i == 0 ? "" : i + 1 == enumerated_shapes.size() ? " or " : ", ") + shape_to_string(enumerated_shapes[i]);
    }
    return out;
  }
  if (!shape_range.empty()) return out + dims_string(shape_range);
  return out + (is_fixed() ? shape_to_string(shape) : flexible_shape_string(*this));
}

const TensorSpec* MethodMetadata::find_input(const std::string& n) const { return find_spec(inputs, n); }
const TensorSpec* MethodMetadata::find_output(const std::string& n) const { return find_spec(outputs, n); }

std::vector<std::string> ModelMetadata::method_names() const {
  std::vector<std::string> names;
  for (const auto& m : methods) names.push_back(m.name);
  return names;
}

const MethodMetadata* ModelMetadata::find_method(const std::string& name) const {
  for (const auto& m : methods) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

const MethodMetadata& ModelMetadata::method(const std::string& name) const {
  if (const MethodMetadata* m = find_method(name)) return *m;
  std::string known;
  for (const auto& m : methods) known += (known.empty() ? "" : ", ") + m.name;
  throw MetadataError("no method named '" + name + "'; the bundle has: " + known);
}

}  // namespace staticllm

#include "staticllm/model_metadata.h"

#include "staticllm/errors.h"

namespace staticllm {

namespace {

const TensorSpec* find_spec(const std::vector<TensorSpec>& specs, const std::string& name) {
  for (const auto& s : specs) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

}  // namespace

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

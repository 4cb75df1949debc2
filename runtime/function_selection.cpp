#include "staticllm/function_selection.h"

namespace staticllm {

std::optional<std::string> coreml_function_name(const ModelMetadata& model, const MethodMetadata& method) {
  if (!model.multifunction) return std::nullopt;
  return method.function_name;
}

}  // namespace staticllm

// Which Core ML function a method runs. Kept in portable C++ so ctest covers
// the decision the Objective-C++ manager applies on Apple platforms.
#pragma once

#include <optional>
#include <string>

#include "staticllm/model_metadata.h"

namespace staticllm {

// Multifunction package: the method's function name. Single-function package:
// nullopt, so MLModelConfiguration.functionName stays nil (setting it on a
// single-function model makes Core ML fail to load it on older OS versions).
std::optional<std::string> coreml_function_name(const ModelMetadata& model, const MethodMetadata& method);

}  // namespace staticllm

// Exception hierarchy of the native core. The pybind11 bindings map each type
// onto the Python class of the same name under staticllm.StaticLLMError.
#pragma once

#include <stdexcept>
#include <string>

namespace staticllm {

class StaticLLMError : public std::runtime_error {
 public:
  explicit StaticLLMError(const std::string& what) : std::runtime_error(what) {}
};

// A bundle directory or one of its files is missing, truncated or corrupt.
class BundleError : public StaticLLMError {
 public:
  using StaticLLMError::StaticLLMError;
};

// metadata.json does not follow the schema; the message names the key path.
class MetadataError : public StaticLLMError {
 public:
  using StaticLLMError::StaticLLMError;
};

// Inputs given to Method::execute do not match the method's specs.
class InputError : public StaticLLMError {
 public:
  using StaticLLMError::StaticLLMError;
};

// The program uses an op (or an op variant) the interpreter lacks.
class UnsupportedOpError : public StaticLLMError {
 public:
  using StaticLLMError::StaticLLMError;
};

}  // namespace staticllm

// Public entry point: open a bundle, pick a method, run it.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "staticllm/backend.h"
#include "staticllm/model_metadata.h"
#include "staticllm/tensor.h"

namespace staticllm {

class Method {
 public:
  Method(const MethodMetadata& spec, std::unique_ptr<MethodExecutable> exe);
  const std::string& name() const { return spec_.name; }
  const MethodMetadata& spec() const { return spec_; }
  // Checks count, dtype and shape of every input (InputError naming the input,
  // expected and given spec), then runs. Thread-safe.
  std::vector<Tensor> execute(const std::vector<Tensor>& inputs) const;
  // Validation alone, used by the bindings before the GIL is released.
  void validate(const std::vector<Tensor>& inputs) const;

 private:
  // BundleError if the backend's results do not match the output/state specs.
  void check_outputs(const std::vector<Tensor>& outputs) const;
  MethodMetadata spec_;
  std::unique_ptr<MethodExecutable> exe_;
};

class Runtime {
 public:
  // backend: "auto" (Core ML on Apple, interpreter elsewhere), "mil", "coreml".
  static std::shared_ptr<Runtime> load(const std::string& path, const std::string& backend = "auto",
                                       const CoreMLOptions& options = {});
  const ModelMetadata& metadata() const { return metadata_; }
  const std::string& backend_name() const { return backend_name_; }
  std::vector<std::string> method_names() const { return metadata_.method_names(); }
  const std::string& default_method() const { return metadata_.default_method; }
  // MetadataError naming the known methods if `name` is not one of them.
  std::shared_ptr<Method> method(const std::string& name);

 private:
  Runtime() = default;
  ModelMetadata metadata_;
  std::string backend_name_;
  std::unique_ptr<Backend> backend_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Method>> methods_;
};

}  // namespace staticllm

// Public entry point: open a bundle, pick a method, run it.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "staticllm/backend.h"
#include "staticllm/model_metadata.h"
#include "staticllm/state.h"
#include "staticllm/tensor.h"

namespace staticllm {

class Method {
 public:
  Method(const MethodMetadata& spec, std::unique_ptr<MethodExecutable> exe, uint64_t runtime_id);
  const std::string& name() const { return spec_.name; }
  const MethodMetadata& spec() const { return spec_; }

  // Zero-filled states for this method (an empty State if it has none).
  std::shared_ptr<State> make_state() const;
  // Runs on `inputs` (MethodMetadata::inputs order) with the states held in
  // `state`, which the call updates in place; returns the outputs. InputError
  // naming the input (expected and given spec) or saying how the State does
  // not fit. Thread-safe; calls sharing one State run one at a time.
  std::vector<Tensor> execute(const std::vector<Tensor>& inputs, State& state) const;
  // Without a State (the behaviour before State existed): `inputs` are the
  // inputs, then one tensor per state; returns the outputs, then the updated
  // states. Each call copies every state in and out.
  std::vector<Tensor> execute(const std::vector<Tensor>& inputs) const;

 private:
  // The one full check of a call's tensors: count, dtype and shape of the
  // first `with_states ? inputs + states : inputs` specs.
  void validate(const std::vector<Tensor>& inputs, bool with_states) const;
  // BundleError if the backend's results do not match the output specs.
  void check_outputs(const std::vector<Tensor>& outputs) const;
  MethodMetadata spec_;
  std::unique_ptr<MethodExecutable> exe_;
  uint64_t runtime_id_;
};

class Runtime {
 public:
  // backend: "auto" (Core ML on Apple, interpreter elsewhere), "mil", "coreml".
  // weights.mmap applies to the interpreter (Core ML maps its own compiled
  // copy); weights.verify to both.
  static std::shared_ptr<Runtime> load(const std::string& path, const std::string& backend = "auto",
                                       const CoreMLOptions& options = {}, const WeightOptions& weights = {});
  const ModelMetadata& metadata() const { return metadata_; }
  const std::string& backend_name() const { return backend_name_; }
  std::vector<std::string> method_names() const { return metadata_.method_names(); }
  const std::string& default_method() const { return metadata_.default_method; }
  // MetadataError naming the known methods if `name` is not one of them.
  std::shared_ptr<Method> method(const std::string& name);

 private:
  Runtime() = default;
  uint64_t id_ = 0;  // unique per loaded Runtime: States do not cross Runtimes
  ModelMetadata metadata_;
  std::string backend_name_;
  std::unique_ptr<Backend> backend_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Method>> methods_;
};

// Gives the heap's free memory back to the system (glibc's malloc_trim; a
// no-op elsewhere). Loading a bundle parses megabytes of JSON into small
// blocks that are freed once planned but stay in the process's RSS otherwise.
void release_free_heap();

}  // namespace staticllm

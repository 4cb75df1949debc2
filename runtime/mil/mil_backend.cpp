// The portable backend: one parsed program and one weight mapping per bundle,
// every method planned up front so an unsupported op fails the load.
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "mil/plan_cache.h"
#include "mil/program.h"
#include "mil/weight_store.h"
#include "staticllm/backend.h"
#include "staticllm/errors.h"
#include "staticllm/runtime.h"
#include "staticllm/weights_digest.h"

namespace staticllm {

namespace {

// One buffer per state, zero-filled; the executor reads and writes them in place.
class MilStateStorage : public StateStorage {
 public:
  explicit MilStateStorage(const std::vector<TensorSpec>& specs) {
    for (const TensorSpec& s : specs) {
      names_.push_back(s.name);
      buffers_.emplace_back(s.dtype, s.shape);
    }
  }
  void read(size_t i, Tensor& out) override { std::memcpy(out.data(), buffers_[i].data(), buffers_[i].nbytes()); }
  void write(size_t i, const Tensor& value) override {
    std::memcpy(buffers_[i].data(), value.data(), buffers_[i].nbytes());
  }
  // Method checked that the State holds every state of the method.
  const Tensor& buffer(const std::string& name) const {
    size_t i = static_cast<size_t>(std::find(names_.begin(), names_.end(), name) - names_.begin());
    if (i == names_.size()) throw BundleError("the State has no state '" + name + "'");
    return buffers_[i];
  }

 private:
  std::vector<std::string> names_;
  std::vector<Tensor> buffers_;
};

class MilExecutable : public MethodExecutable {
 public:
  MilExecutable(std::shared_ptr<mil::MethodPlans> exec, const MethodMetadata& method)
      : exec_(std::move(exec)), states_(method.states) {}

  std::unique_ptr<StateStorage> make_state() override { return std::make_unique<MilStateStorage>(states_); }

  std::vector<Tensor> execute(const std::vector<Tensor>& inputs, StateStorage* state) override {
    std::vector<Tensor> buffers;
    if (!states_.empty()) {
      auto* storage = dynamic_cast<MilStateStorage*>(state);
      if (storage == nullptr) throw BundleError("the State was not made by the interpreter backend");
      for (const TensorSpec& s : states_) buffers.push_back(storage->buffer(s.name));
    }
    return exec_->execute(inputs, buffers);
  }

 private:
  std::shared_ptr<mil::MethodPlans> exec_;
  std::vector<TensorSpec> states_;
};

class MilBackend : public Backend {
 public:
  MilBackend(const BundlePaths& paths, const ModelMetadata& metadata, const WeightOptions& options) {
    // A package without weight.bin is fine as long as no constant lives in it
    // (load_program then reports the first blob reference).
    struct stat st;
    if (::stat(paths.weights.c_str(), &st) == 0) {
      weights_ = mil::WeightStore::open(paths.weights, options.mmap);
      if (options.verify) check_weights_digest(metadata, paths.weights, weights_->data(), weights_->size());
    } else if (options.verify) {
      check_weights_file(metadata, paths.weights);  // says what is missing
    }
    // Kept only by methods that plan again after the load (flexible shapes).
    auto program = std::make_shared<const mil::Program>(mil::load_program(paths.program_json, weights_.get()));
    for (const MethodMetadata& m : metadata.methods) {
      auto it = program->functions.find(m.function_name);
      if (it == program->functions.end()) {
        std::string known;
        for (const auto& f : program->functions) known += (known.empty() ? "" : ", ") + f.first;
        throw BundleError("method '" + m.name + "': function '" + m.function_name + "' is not in " +
                          paths.program_json + " (it has: " + known + ")");
      }
      executors_[m.name] = std::make_shared<mil::MethodPlans>(program, it->second, m, constants_);
    }
  }

  std::string name() const override { return "mil"; }

  std::unique_ptr<MethodExecutable> load_method(const MethodMetadata& method) override {
    auto it = executors_.find(method.name);
    if (it == executors_.end()) throw BundleError("method '" + method.name + "' is not in this bundle's metadata");
    return std::make_unique<MilExecutable>(it->second, method);
  }

 private:
  // Constants viewing weight.bin keep the mapping alive; this keeps it for
  // the backend's lifetime too.
  std::shared_ptr<mil::WeightStore> weights_;
  // Folded and decompressed constants, shared by the methods' plans.
  std::shared_ptr<mil::ConstPool> constants_ = std::make_shared<mil::ConstPool>();
  std::map<std::string, std::shared_ptr<mil::MethodPlans>> executors_;
};

}  // namespace

std::unique_ptr<Backend> make_mil_backend(const BundlePaths& paths, const ModelMetadata& metadata,
                                          const WeightOptions& weights) {
  auto backend = std::make_unique<MilBackend>(paths, metadata, weights);
  release_free_heap();  // the parsed program, freed once planned (30 MiB for SmolLM2-135M)
  return backend;
}

}  // namespace staticllm

// The portable backend: one parsed program and one weight mapping per bundle,
// every method planned up front so an unsupported op fails the load.
#include <sys/stat.h>

#include <map>

#include "mil/executor.h"
#include "mil/planner.h"
#include "mil/program.h"
#include "mil/weight_store.h"
#include "staticllm/backend.h"
#include "staticllm/errors.h"

namespace staticllm {

namespace {

class MilExecutable : public MethodExecutable {
 public:
  explicit MilExecutable(std::shared_ptr<mil::Executor> exec) : exec_(std::move(exec)) {}
  std::vector<Tensor> execute(const std::vector<Tensor>& inputs) override { return exec_->execute(inputs); }

 private:
  std::shared_ptr<mil::Executor> exec_;
};

class MilBackend : public Backend {
 public:
  MilBackend(const BundlePaths& paths, const ModelMetadata& metadata) {
    // A package without weight.bin is fine as long as no constant lives in it
    // (load_program then reports the first blob reference).
    struct stat st;
    if (::stat(paths.weights.c_str(), &st) == 0) weights_ = mil::WeightStore::open(paths.weights);
    mil::Program program = mil::load_program(paths.program_json, weights_.get());
    for (const MethodMetadata& m : metadata.methods) {
      auto it = program.functions.find(m.function_name);
      if (it == program.functions.end()) {
        std::string known;
        for (const auto& f : program.functions) known += (known.empty() ? "" : ", ") + f.first;
        throw BundleError("method '" + m.name + "': function '" + m.function_name + "' is not in " +
                          paths.program_json + " (it has: " + known + ")");
      }
      executors_[m.name] = std::make_shared<mil::Executor>(mil::plan_function(it->second, m));
    }
  }

  std::string name() const override { return "mil"; }

  std::unique_ptr<MethodExecutable> load_method(const MethodMetadata& method) override {
    auto it = executors_.find(method.name);
    if (it == executors_.end()) throw BundleError("method '" + method.name + "' is not in this bundle's metadata");
    return std::make_unique<MilExecutable>(it->second);
  }

 private:
  // Constants viewing weight.bin keep the mapping alive; this keeps it for
  // the backend's lifetime too.
  std::shared_ptr<mil::WeightStore> weights_;
  std::map<std::string, std::shared_ptr<mil::Executor>> executors_;
};

}  // namespace

std::unique_ptr<Backend> make_mil_backend(const BundlePaths& paths, const ModelMetadata& metadata) {
  return std::make_unique<MilBackend>(paths, metadata);
}

}  // namespace staticllm

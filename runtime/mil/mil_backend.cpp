// The portable backend: one parsed program and one weight mapping per bundle,
// every method planned up front so an unsupported op fails the load.
#include <sys/stat.h>

#include <map>

#include "mil/planner.h"
#include "mil/program.h"
#include "mil/weight_store.h"
#include "staticllm/backend.h"
#include "staticllm/errors.h"

namespace staticllm {

namespace {

class MilExecutable : public MethodExecutable {
 public:
  explicit MilExecutable(std::shared_ptr<mil::PlannedFunction> plan) : plan_(std::move(plan)) {}
  std::vector<Tensor> execute(const std::vector<Tensor>& inputs) override { return plan_->execute(inputs); }

 private:
  std::shared_ptr<mil::PlannedFunction> plan_;
};

std::vector<std::string> names(const std::vector<TensorSpec>& specs) {
  std::vector<std::string> out;
  for (const auto& s : specs) out.push_back(s.name);
  return out;
}

// The metadata must describe the program as it is: same names, dtypes, shapes.
void check_inputs(const MethodMetadata& m, const mil::FunctionDecl& fn) {
  for (const TensorSpec& spec : m.inputs) {
    for (const auto& in : fn.inputs) {
      if (in.name != spec.name) continue;
      if (in.type.dtype != spec.dtype || in.type.shape != spec.shape) {
        throw BundleError("method '" + m.name + "': metadata input '" + spec.name + "' is " + dtype_name(spec.dtype) + " " +
                          shape_to_string(spec.shape) + " but the program declares " + dtype_name(in.type.dtype) + " " +
                          shape_to_string(in.type.shape));
      }
    }
  }
}

class MilBackend : public Backend {
 public:
  MilBackend(const BundlePaths& paths, const ModelMetadata& metadata) {
    struct stat st;
    if (::stat(paths.weights.c_str(), &st) == 0) weights_ = mil::WeightStore::open(paths.weights);
    program_ = mil::load_program(paths.program_json, weights_.get());
    for (const MethodMetadata& m : metadata.methods) {
      auto it = program_.functions.find(m.function_name);
      if (it == program_.functions.end()) {
        std::string known;
        for (const auto& f : program_.functions) known += (known.empty() ? "" : ", ") + f.first;
        throw BundleError("method '" + m.name + "': function '" + m.function_name + "' is not in program.json (it has: " +
                          known + ")");
      }
      check_inputs(m, it->second);
      plans_[m.name] = std::make_shared<mil::PlannedFunction>(it->second, names(m.inputs), names(m.outputs), names(m.states));
    }
    program_.functions.clear();  // the plans hold what they need
  }

  std::string name() const override { return "mil"; }

  std::unique_ptr<MethodExecutable> load_method(const MethodMetadata& method) override {
    auto it = plans_.find(method.name);
    if (it == plans_.end()) throw BundleError("method '" + method.name + "' was not planned");
    return std::make_unique<MilExecutable>(it->second);
  }

 private:
  std::shared_ptr<mil::WeightStore> weights_;
  mil::Program program_;
  std::map<std::string, std::shared_ptr<mil::PlannedFunction>> plans_;
};

}  // namespace

std::unique_ptr<Backend> make_mil_backend(const BundlePaths& paths, const ModelMetadata& metadata) {
  return std::make_unique<MilBackend>(paths, metadata);
}

}  // namespace staticllm

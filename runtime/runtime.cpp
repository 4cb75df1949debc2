#include "staticllm/runtime.h"

#include <sys/stat.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <atomic>
#include <cstddef>

#include "staticllm/coreml_support.h"
#include "staticllm/errors.h"
#include "staticllm/serde_json.h"
#include "staticllm/weights_digest.h"

namespace staticllm {

namespace {

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

Method::Method(const MethodMetadata& spec, std::unique_ptr<MethodExecutable> exe, uint64_t runtime_id)
    : spec_(spec), exe_(std::move(exe)), runtime_id_(runtime_id) {}

void Method::validate(const std::vector<Tensor>& inputs, bool with_states) const {
  size_t expected = spec_.inputs.size() + (with_states ? spec_.states.size() : 0);
  if (inputs.size() != expected) {
    throw InputError(
        "method '" + spec_.name + "': expected " + std::to_string(spec_.inputs.size()) + " inputs" +
        (with_states && !spec_.states.empty() ? " and " + std::to_string(spec_.states.size()) + " states" : "") +
        ", got " + std::to_string(inputs.size()));
  }
  for (size_t i = 0; i < expected; ++i) {
    bool is_state = i >= spec_.inputs.size();
    const TensorSpec& s = is_state ? spec_.states[i - spec_.inputs.size()] : spec_.inputs[i];
    const Tensor& t = inputs[i];
    if (t.dtype() != s.dtype || (is_state ? t.shape() != s.shape : !s.accepts(t.shape()))) {
      throw InputError("method '" + spec_.name + "': " + (is_state ? "state" : "input") + " '" + s.name + "' expects " +
                       s.allowed() + ", got " + spec_to_string(t.dtype(), t.shape()));
    }
    if (t.data() == nullptr && t.numel() > 0) {
      throw InputError("method '" + spec_.name + "': input '" + s.name + "' has no data");
    }
  }
}

std::shared_ptr<State> Method::make_state() const {
  return std::make_shared<State>(runtime_id_, spec_.states, exe_->make_state());
}

std::vector<Tensor> Method::execute(const std::vector<Tensor>& inputs, State& state) const {
  validate(inputs, false);
  if (state.runtime_id_ != runtime_id_) {
    throw InputError("method '" + spec_.name +
                     "': the State was made by a method of another Runtime; make it with make_state() of a method "
                     "of this one");
  }
  std::string problem = state_mismatch(spec_.states, state.specs_);
  if (!problem.empty()) throw InputError("method '" + spec_.name + "': " + problem);
  std::lock_guard<std::mutex> lock(state.mutex_);
  std::vector<Tensor> outputs = exe_->execute(inputs, state.storage_.get());
  check_outputs(outputs);
  return outputs;
}

std::vector<Tensor> Method::execute(const std::vector<Tensor>& inputs) const {
  validate(inputs, true);
  if (spec_.states.empty()) {
    std::vector<Tensor> outputs = exe_->execute(inputs, nullptr);
    check_outputs(outputs);
    return outputs;
  }
  // A State for this call alone: the given states go in, the updated ones come out.
  const size_t n_in = spec_.inputs.size();
  std::unique_ptr<StateStorage> storage = exe_->make_state();
  for (size_t i = 0; i < spec_.states.size(); ++i) storage->write(i, inputs[n_in + i]);
  std::vector<Tensor> outputs = exe_->execute(
      std::vector<Tensor>(inputs.begin(), inputs.begin() + static_cast<std::ptrdiff_t>(n_in)), storage.get());
  check_outputs(outputs);
  for (size_t i = 0; i < spec_.states.size(); ++i) {
    Tensor t(spec_.states[i].dtype, spec_.states[i].shape);
    storage->read(i, t);
    outputs.push_back(std::move(t));
  }
  return outputs;
}

// Callers index results by the metadata's specs, so a backend that disagrees
// with metadata.json must fail loudly rather than hand back mislabeled arrays.
void Method::check_outputs(const std::vector<Tensor>& outputs) const {
  if (outputs.size() != spec_.outputs.size()) {
    throw BundleError("method '" + spec_.name + "': the backend returned " + std::to_string(outputs.size()) +
                      " results; metadata.json declares " + std::to_string(spec_.outputs.size()) + " outputs");
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const TensorSpec& s = spec_.outputs[i];
    const Tensor& t = outputs[i];
    if (t.dtype() != s.dtype || !s.accepts(t.shape())) {
      throw BundleError("method '" + spec_.name + "': output '" + s.name + "' is " +
                        spec_to_string(t.dtype(), t.shape()) + " but metadata.json declares " + s.allowed());
    }
  }
}

std::shared_ptr<Runtime> Runtime::load(const std::string& path, const std::string& backend,
                                       const CoreMLOptions& options, const WeightOptions& weights) {
  if (backend != "auto" && backend != "mil" && backend != "coreml") {
    throw InputError("unknown backend '" + backend + "'; choose auto, mil or coreml");
  }
  // Checked on every platform so a typo fails the same way off Apple, where
  // the Core ML options are otherwise unused.
  parse_compute_units(options.compute_units);
  if (!is_directory(path)) throw BundleError("bundle directory not found: " + path);
  BundlePaths paths = bundle_paths(path);
  std::shared_ptr<Runtime> rt(new Runtime());
  static std::atomic<uint64_t> next_id{1};
  rt->id_ = next_id++;
  rt->metadata_ = load_metadata_file(paths.metadata);
  std::string chosen = backend;
  if (chosen == "auto") {
#ifdef STATICLLM_HAVE_COREML
    chosen = "coreml";
#else
    chosen = "mil";
#endif
  }
  rt->backend_name_ = chosen;
  if (chosen == "coreml") {
    // Core ML compiles the package into its cache and maps that copy; the
    // bundle's weight.bin is checked as it is on disk.
    if (weights.verify) check_weights_file(rt->metadata_, paths.weights);
    rt->backend_ = make_coreml_backend(paths, rt->metadata_, options);
  } else {
    rt->backend_ = make_mil_backend(paths, rt->metadata_, weights);
  }
  return rt;
}

std::shared_ptr<Method> Runtime::method(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = methods_.find(name);
  if (it != methods_.end()) return it->second;
  const MethodMetadata& spec = metadata_.method(name);
  auto m = std::make_shared<Method>(spec, backend_->load_method(spec), id_);
  methods_[name] = m;
  return m;
}

void release_free_heap() {
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

}  // namespace staticllm

// A backend turns a bundle's methods into executables. Inputs reaching a
// backend were already validated against the method's specs by Method; a
// backend checks them again at most with a debug assertion.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "staticllm/model_metadata.h"
#include "staticllm/tensor.h"

namespace staticllm {

// A backend's storage for the states of one State object (state.h): Core ML
// keeps an MLState, the interpreter one buffer per state. Index i is the i-th
// spec of the method that made it.
class StateStorage {
 public:
  virtual ~StateStorage() = default;
  // Copy state `i` out to / in from a dense tensor of its spec (checked by State).
  virtual void read(size_t i, Tensor& out) = 0;
  virtual void write(size_t i, const Tensor& value) = 0;
};

class MethodExecutable {
 public:
  virtual ~MethodExecutable() = default;
  // Zero-filled storage for this method's states (MethodMetadata::states order).
  virtual std::unique_ptr<StateStorage> make_state() = 0;
  // `inputs` follow MethodMetadata::inputs. `state` was made by make_state of
  // a method of the same backend whose states have this method's names, dtypes
  // and shapes (Method checks that), and is updated in place; it is ignored by
  // methods without states. Returns outputs in MethodMetadata::outputs order.
  // Must be safe to call from several threads at once (with different states).
  virtual std::vector<Tensor> execute(const std::vector<Tensor>& inputs, StateStorage* state) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "mil" or "coreml"
  virtual std::unique_ptr<MethodExecutable> load_method(const MethodMetadata& method) = 0;
};

struct BundlePaths {
  std::string root;          // the bundle directory
  std::string metadata;      // root/metadata.json
  std::string mlpackage;     // root/model.mlpackage
  std::string program_json;  // root/program.json
  std::string weights;       // root/model.mlpackage/Data/com.apple.CoreML/weights/weight.bin
};
BundlePaths bundle_paths(const std::string& root);

// How the interpreter holds weight.bin, and whether it is checked first.
struct WeightOptions {
  // Map the file (shared pages read on demand, like Core ML and llama.cpp;
  // a file truncated meanwhile ends the process with SIGBUS, one overwritten
  // in place changes results) or read it into memory (immune to both, at the
  // cost of a private copy and the read time).
  bool mmap = true;
  // Check weight.bin against metadata.json's weights_sha256 (BundleError if it
  // differs or the bundle records none). With mmap=false the bytes checked are
  // the bytes that run.
  bool verify = false;
};

// The portable interpreter (runtime/mil). Loads program.json, maps or reads
// weight.bin once and checks every op of every method is supported
// (UnsupportedOpError).
std::unique_ptr<Backend> make_mil_backend(const BundlePaths& paths, const ModelMetadata& metadata,
                                          const WeightOptions& weights = {});

// Core ML (Apple only). Elsewhere it throws BundleError explaining that the
// coreml backend needs macOS/iOS and that backend="mil" runs everywhere.
struct CoreMLOptions {
  std::string compute_units = "all";  // all | cpu_only | cpu_and_gpu | cpu_and_ne
  std::string cache_dir;              // compiled .mlmodelc cache; empty = default
};
std::unique_ptr<Backend> make_coreml_backend(const BundlePaths& paths, const ModelMetadata& metadata,
                                             const CoreMLOptions& options);

}  // namespace staticllm

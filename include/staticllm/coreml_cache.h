// The compiled-model cache of the Core ML backend: Core ML runs a compiled
// .mlmodelc, which staticllm keeps per package content and Core ML version.
// Portable (std::filesystem) so ctest covers it; the Objective-C++ backend
// supplies only the compile and load steps.
#pragma once

#include <functional>
#include <string>

namespace staticllm {

// A key that changes whenever any file of the package changes (FNV-1a over
// sorted relative paths and contents) or Core ML does (`coreml_version`, e.g.
// the OS build: a compiled .mlmodelc is only reused by the Core ML that
// compiled it). BundleError if the package cannot be read.
std::string compiled_model_key(const std::string& mlpackage_dir, const std::string& coreml_version);

// <cache_dir>/<key>.mlmodelc; cache_dir empty -> $STATICLLM_CACHE_DIR, else
// $XDG_CACHE_HOME/staticllm, else ~/.cache/staticllm (~/Library/Caches on Apple).
std::string compiled_model_path(const std::string& cache_dir, const std::string& key);

// Publishes a freshly compiled model directory `compiled` (Core ML writes it
// to a temporary directory, possibly on another volume) as `target`: it is
// moved or copied into a temporary directory beside `target`, then renamed
// into place in one step, so no reader ever sees a partial model. When
// another process published `target` meanwhile, its copy stays. `compiled`
// and the temporary directory are removed on every path. BundleError with
// the system's reason on failure (e.g. the cache directory cannot be created).
void publish_compiled_model(const std::string& compiled, const std::string& target);

// Removes a cached compiled model (one that failed to load): renamed away in
// one step, then deleted. BundleError if it cannot be removed.
void drop_compiled_model(const std::string& target);

// Compiles and publishes the model at `target` unless it is there already
// (`compile` returns the directory Core ML wrote; BundleError if it fails).
// Returns whether it compiled.
bool ensure_compiled_model(const std::string& target, const std::function<std::string()>& compile);

// Loads the compiled model at `target` with `load` (returns "" on success,
// otherwise why it failed), first compiling and publishing it when absent
// (`compile` returns the directory Core ML wrote; BundleError if it fails).
// A cached copy that fails to load (left by another Core ML, or damaged) is
// dropped, compiled once more and loaded again. BundleError naming `what`
// and the reason when the model cannot be loaded.
void load_compiled_model(const std::string& target, const std::function<std::string()>& compile,
                         const std::function<std::string(const std::string&)>& load, const std::string& what);

}  // namespace staticllm

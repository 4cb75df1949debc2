// Decisions of the Core ML manager that do not need Core ML, kept portable so
// ctest covers them on every platform.
#pragma once

#include <string>

namespace staticllm {

enum class ComputeUnits { kAll, kCpuOnly, kCpuAndGpu, kCpuAndNeuralEngine };

// "all" | "cpu_only" | "cpu_and_gpu" | "cpu_and_ne"; InputError otherwise.
ComputeUnits parse_compute_units(const std::string& name);

// A key that changes whenever any file of the package changes (FNV-1a over
// sorted relative paths and contents), so a compiled .mlmodelc is reused
// exactly while the package is the same. BundleError if it cannot be read.
std::string package_content_key(const std::string& mlpackage_dir);

// <cache_dir>/<key>.mlmodelc; cache_dir empty -> $STATICLLM_CACHE_DIR, else
// $XDG_CACHE_HOME/staticllm, else ~/.cache/staticllm (~/Library/Caches on Apple).
std::string compiled_model_path(const std::string& cache_dir, const std::string& key);

}  // namespace staticllm

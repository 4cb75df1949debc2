// Decisions of the Core ML manager that do not need Core ML, kept portable so
// ctest covers them on every platform.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "staticllm/tensor.h"

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

// Element type codes shared by MLMultiArrayDataType and the spec's
// ArrayFeatureType.ArrayDataType: 0x10000 | bits for floats, 0x20000 | bits
// for signed integers. nullopt for codes staticllm does not hold.
std::optional<DType> dtype_from_array_code(int64_t code);
// The code for `dtype`; InputError naming `what` if Core ML arrays cannot hold
// it (fp16, fp32, fp64, int32 and int8 only).
int64_t array_code(DType dtype, const std::string& what);

// Row-major strides, in elements, of a dense tensor of `shape`.
std::vector<int64_t> dense_strides(const Shape& shape);

// Whether every element of `shape` laid out with `strides` (elements, as
// MLMultiArray.strides) lies inside a buffer of `elems` elements. Core ML may
// pad rows, so its arrays are not always dense; this is checked before any copy.
bool strided_fits(const Shape& shape, const std::vector<int64_t>& strides, int64_t elems);

// Copies every element of `shape` from one strided layout to another. Callers
// check both layouts with strided_fits first. Never throws: it runs inside
// Core ML's buffer handlers.
void strided_copy(const void* src, const std::vector<int64_t>& src_strides, void* dst,
                  const std::vector<int64_t>& dst_strides, const Shape& shape, size_t elem_size) noexcept;

}  // namespace staticllm

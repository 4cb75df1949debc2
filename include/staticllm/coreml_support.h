// Decisions of the Core ML manager that do not need Core ML, kept portable so
// ctest covers them on every platform.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "staticllm/model_metadata.h"
#include "staticllm/tensor.h"

namespace staticllm {

enum class ComputeUnits { kAll, kCpuOnly, kCpuAndGpu, kCpuAndNeuralEngine };

// "all" | "cpu_only" | "cpu_and_gpu" | "cpu_and_ne"; InputError otherwise.
ComputeUnits parse_compute_units(const std::string& name);

// What this OS's Core ML offers, beyond what an ML Program needs anyway.
// Element types of Core ML arrays (MLMultiArrayDataType) by OS: fp32 and
// int32 since macOS 10.13 / iOS 11, fp64 since macOS 11 / iOS 14 (as a named
// type), fp16 since macOS 12 / iOS 16, int8 only since macOS 26 / iOS 26.
// States (MLState) and multifunction packages (functionName) need macOS 15 /
// iOS 18. The Objective-C++ backend fills this from @available checks.
struct CoreMLFeatures {
  bool fp16_arrays = false;  // macOS 12 / iOS 16
  bool int8_arrays = false;  // macOS 26 / iOS 26
  bool states = false;       // macOS 15 / iOS 18
  bool functions = false;    // macOS 15 / iOS 18
};

// BundleError naming the method (and tensor) when Core ML with `features`
// cannot run `method` of `model`: an input, output or state of an element type
// its arrays cannot hold (bool, int64, ..., fp16 or int8 on older OS
// versions), states or a multifunction package on an OS without them, or a
// name Core ML cannot take (not valid UTF-8, or holding a NUL).
void check_coreml_method(const ModelMetadata& model, const MethodMetadata& method, const CoreMLFeatures& features);

// Whether `s` is valid UTF-8 (no overlong forms, surrogates or code points
// beyond U+10FFFF).
bool is_valid_utf8(const std::string& s);

// Element type codes shared by MLMultiArrayDataType and the spec's
// ArrayFeatureType.ArrayDataType (DTypeInfo::array_code). nullopt for codes
// staticllm does not hold.
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
// check both layouts with strided_fits first. Allocates nothing and never
// throws: it runs inside Core ML's buffer handlers.
void strided_copy(const void* src, const std::vector<int64_t>& src_strides, void* dst,
                  const std::vector<int64_t>& dst_strides, const Shape& shape, size_t elem_size) noexcept;

}  // namespace staticllm

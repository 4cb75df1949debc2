// A dense, row-major tensor: dtype, shape and a (shared or borrowed) buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace staticllm {

// Element types of Core ML ML Programs that the runtime can hold.
enum class DType : uint8_t {
  kFloat16,
  kFloat32,
  kFloat64,
  kInt8,
  kUInt8,
  kInt16,
  kUInt16,
  kInt32,
  kInt64,
  kBool,
};

using Shape = std::vector<int64_t>;
// A dimension of a declared shape (a method's TensorSpec, a program's value
// type) fixed only when the method runs. A Tensor's shape never holds one.
constexpr int64_t kFlexibleDim = -1;

// What staticllm says about an element type, in one table (tensor.cpp) that
// the serde, the Core ML backend and the Python bindings all read.
struct DTypeInfo {
  DType dtype;
  const char*
      name;     // metadata.json: "fp16", "fp32", "fp64", "int8", "uint8", "int16", "uint16", "int32", "int64", "bool"
  size_t size;  // bytes per element
  const char* numpy_name;  // numpy's: "float16", ..., "bool"
  // Core ML's MLMultiArrayDataType, equal to the spec's ArrayFeatureType
  // ArrayDataType: 0x10000 | bits for floats, 0x20000 | bits for signed
  // integers; 0 when Core ML arrays cannot hold the type.
  int64_t array_code;
};
// Every DType, in enum order.
const std::vector<DTypeInfo>& dtype_table();
const DTypeInfo& dtype_info(DType dtype);

// Size in bytes of one element.
size_t dtype_size(DType dtype);
// Canonical short name used in metadata.json (DTypeInfo::name).
const char* dtype_name(DType dtype);
// Inverse of dtype_name; returns false for an unknown name.
bool dtype_from_name(const std::string& name, DType* out);

int64_t shape_numel(const Shape& shape);
std::string shape_to_string(const Shape& shape);  // "[1, 4, 8]"
// "fp16 [1, 4, 8]", the form error messages use for a tensor spec.
std::string spec_to_string(DType dtype, const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  // Owning tensor with zero-initialised storage.
  Tensor(DType dtype, Shape shape);
  // Non-owning view over memory that outlives the tensor (arena slots, mmap).
  static Tensor view(DType dtype, Shape shape, void* data);
  // Owning tensor sharing `keep_alive` (e.g. a Python buffer) with `data` inside it.
  static Tensor shared(DType dtype, Shape shape, void* data, std::shared_ptr<void> keep_alive);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool defined() const { return data_ != nullptr || numel() == 0; }

  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T>
  T* data_as() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* data_as() const {
    return static_cast<const T*>(data_);
  }

 private:
  DType dtype_ = DType::kFloat32;
  Shape shape_;
  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
};

}  // namespace staticllm

#include "staticllm/tensor.h"

#include <cstring>

#include "staticllm/errors.h"

namespace staticllm {

const std::vector<DTypeInfo>& dtype_table() {
  constexpr int64_t kFloat = 0x10000, kInt = 0x20000;
  static const std::vector<DTypeInfo> table = {
      {DType::kFloat16, "fp16", 2, "float16", kFloat | 16},
      {DType::kFloat32, "fp32", 4, "float32", kFloat | 32},
      {DType::kFloat64, "fp64", 8, "float64", kFloat | 64},
      {DType::kInt8, "int8", 1, "int8", kInt | 8},
      {DType::kUInt8, "uint8", 1, "uint8", 0},
      {DType::kInt16, "int16", 2, "int16", 0},
      {DType::kUInt16, "uint16", 2, "uint16", 0},
      {DType::kInt32, "int32", 4, "int32", kInt | 32},
      {DType::kInt64, "int64", 8, "int64", 0},
      {DType::kBool, "bool", 1, "bool", 0},
  };
  return table;
}

const DTypeInfo& dtype_info(DType dtype) {
  // The table follows the enum, so the enum value is the index.
  return dtype_table().at(static_cast<size_t>(dtype));
}

size_t dtype_size(DType dtype) { return dtype_info(dtype).size; }

const char* dtype_name(DType dtype) { return dtype_info(dtype).name; }

bool dtype_from_name(const std::string& name, DType* out) {
  for (const auto& d : dtype_table()) {
    if (name == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string spec_to_string(DType dtype, const Shape& shape) {
  return std::string(dtype_name(dtype)) + " " + shape_to_string(shape);
}

std::string shape_to_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  for (int64_t d : shape_) {
    if (d < 0) throw StaticLLMError("negative dimension in shape " + shape_to_string(shape_));
  }
  size_t bytes = nbytes();
  // 64-byte aligned, zeroed storage (SIMD kernels use unaligned loads, but
  // aligned buffers avoid split cache lines).
  void* p = ::operator new(bytes == 0 ? 64 : bytes, std::align_val_t(64));
  std::memset(p, 0, bytes);
  storage_ = std::shared_ptr<void>(p, [](void* q) { ::operator delete(q, std::align_val_t(64)); });
  data_ = p;
}

Tensor Tensor::view(DType dtype, Shape shape, void* data) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = data;
  return t;
}

Tensor Tensor::shared(DType dtype, Shape shape, void* data, std::shared_ptr<void> keep_alive) {
  Tensor t = view(dtype, std::move(shape), data);
  t.storage_ = std::move(keep_alive);
  return t;
}

}  // namespace staticllm

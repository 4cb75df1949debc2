// Runs one interpreter op outside a program: parameters are given as tensors
// (constant or run-time) and the kernel is planned and executed like the
// planner would, with owned output tensors.
#pragma once

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "mil/half.h"
#include "mil/op.h"
#include "mil/thread_pool.h"
#include "staticllm/errors.h"

namespace staticllm::test {

struct Arg {
  Tensor tensor;
  bool is_const = true;
  std::string str;       // string constant when non-empty
  bool is_list = false;  // a MIL list: the tensor is [length, *element shape]
  bool dynamic_length = false;
};

namespace detail {
template <typename T>
void fill_as(Tensor& t, const std::vector<double>& v) {
  for (size_t i = 0; i < v.size(); ++i) t.data_as<T>()[i] = static_cast<T>(v[i]);
}
template <typename T>
void read_as(const Tensor& t, std::vector<double>& out) {
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<double>(t.data_as<T>()[i]);
}
}  // namespace detail

// A tensor of any dtype holding `v` (fp16 rounded to nearest, bool = v != 0).
inline Tensor tensor_of(DType dtype, Shape shape, const std::vector<double>& v) {
  Tensor t(dtype, std::move(shape));
  if (static_cast<int64_t>(v.size()) != t.numel()) {
    throw std::logic_error(std::to_string(v.size()) + " values for shape " + shape_to_string(t.shape()));
  }
  switch (dtype) {
    case DType::kFloat16:
      for (size_t i = 0; i < v.size(); ++i) t.data_as<uint16_t>()[i] = mil::float_to_half(static_cast<float>(v[i]));
      break;
    case DType::kFloat32: detail::fill_as<float>(t, v); break;
    case DType::kFloat64: detail::fill_as<double>(t, v); break;
    case DType::kInt8: detail::fill_as<int8_t>(t, v); break;
    case DType::kUInt8: detail::fill_as<uint8_t>(t, v); break;
    case DType::kInt16: detail::fill_as<int16_t>(t, v); break;
    case DType::kUInt16: detail::fill_as<uint16_t>(t, v); break;
    case DType::kInt32: detail::fill_as<int32_t>(t, v); break;
    case DType::kInt64: detail::fill_as<int64_t>(t, v); break;
    case DType::kBool:
      for (size_t i = 0; i < v.size(); ++i) t.data_as<uint8_t>()[i] = v[i] != 0 ? 1 : 0;
      break;
  }
  return t;
}

// Every element of a tensor of any dtype, as a double.
inline std::vector<double> doubles(const Tensor& t) {
  std::vector<double> out(static_cast<size_t>(t.numel()));
  switch (t.dtype()) {
    case DType::kFloat16:
      for (size_t i = 0; i < out.size(); ++i) out[i] = mil::half_to_float(t.data_as<uint16_t>()[i]);
      break;
    case DType::kFloat32: detail::read_as<float>(t, out); break;
    case DType::kFloat64: detail::read_as<double>(t, out); break;
    case DType::kInt8: detail::read_as<int8_t>(t, out); break;
    case DType::kUInt8: detail::read_as<uint8_t>(t, out); break;
    case DType::kInt16: detail::read_as<int16_t>(t, out); break;
    case DType::kUInt16: detail::read_as<uint16_t>(t, out); break;
    case DType::kInt32: detail::read_as<int32_t>(t, out); break;
    case DType::kInt64: detail::read_as<int64_t>(t, out); break;
    case DType::kBool: detail::read_as<uint8_t>(t, out); break;
  }
  return out;
}

inline Tensor f32(Shape shape, const std::vector<float>& v) {
  return tensor_of(DType::kFloat32, std::move(shape), {v.begin(), v.end()});
}
inline Tensor f16(Shape shape, const std::vector<float>& v) {
  return tensor_of(DType::kFloat16, std::move(shape), {v.begin(), v.end()});
}
inline Tensor i32(Shape shape, const std::vector<int32_t>& v) {
  return tensor_of(DType::kInt32, std::move(shape), {v.begin(), v.end()});
}
inline Tensor boolean(Shape shape, const std::vector<uint8_t>& v) {
  return tensor_of(DType::kBool, std::move(shape), {v.begin(), v.end()});
}
inline std::vector<float> values(const Tensor& t) {
  std::vector<double> d = doubles(t);
  return {d.begin(), d.end()};
}

inline Arg input(Tensor t) { return {std::move(t), false, ""}; }
inline Arg constant(Tensor t) { return {std::move(t), true, ""}; }
inline Arg str(const std::string& s) { return {Tensor(), true, s}; }
// A list held as `t` ([length, *element shape]), run-time or constant.
inline Arg list(Tensor t, bool dynamic_length, bool is_const = false) {
  return {std::move(t), is_const, "", true, dynamic_length};
}

class HarnessContext : public mil::OpPlanContext {
 public:
  HarnessContext(std::string type, std::map<std::string, std::vector<Arg>> params,
                 std::vector<mil::ValueType> declared = {}, int ios_opset = 0)
      : type_(std::move(type)), params_(std::move(params)), declared_(std::move(declared)), ios_opset_(ios_opset) {
    for (auto& [name, args] : params_)
      for (auto& a : args) types_[name].push_back({a.tensor.dtype(), a.tensor.shape(), a.is_list, a.dynamic_length});
  }
  const std::string& op_type() const override { return type_; }
  const std::string& op_name() const override { return type_; }
  bool has(const std::string& p) const override { return params_.count(p) > 0; }
  size_t arity(const std::string& p) const override { return has(p) ? params_.at(p).size() : 0; }
  const mil::ValueType& type(const std::string& p, size_t i) const override { return types_.at(p).at(i); }
  const Tensor* constant(const std::string& p, size_t i) const override {
    const Arg& a = params_.at(p).at(i);
    return a.is_const && a.str.empty() ? &a.tensor : nullptr;
  }
  int input(const std::string& p, size_t i) override {
    slots.push_back(&params_.at(p).at(i).tensor);
    return static_cast<int>(slots.size()) - 1;
  }
  const std::vector<mil::ValueType>& declared_outputs() const override { return declared_; }
  int ios_opset() const override { return ios_opset_; }
  [[noreturn]] void fail(const std::string& m) const override { throw BundleError(type_ + ": " + m); }
  std::string const_string(const std::string& p) const override {
    if (!has(p) || params_.at(p)[0].str.empty()) fail("no string " + p);
    return params_.at(p)[0].str;
  }
  std::vector<const Tensor*> slots;

 private:
  std::string type_;
  std::map<std::string, std::vector<Arg>> params_;
  std::map<std::string, std::vector<mil::ValueType>> types_;
  std::vector<mil::ValueType> declared_;
  int ios_opset_;
};

// Plans and runs `type`; returns its outputs. `declared` are the output types
// a program would declare (most builders compute their own); `ios_opset` the
// function's opset release (0: unknown, iOS15/16 rules).
inline std::vector<Tensor> run_op(const std::string& type, std::map<std::string, std::vector<Arg>> params,
                                  std::vector<mil::ValueType> declared = {}, int ios_opset = 0) {
  const mil::OpBuilder* b = mil::OpRegistry::instance().find(type);
  if (b == nullptr) throw UnsupportedOpError("no op " + type);
  HarnessContext ctx(type, std::move(params), std::move(declared), ios_opset);
  mil::PlannedOp op = (*b)(ctx);
  std::vector<Tensor> outs;
  for (const auto& t : op.outputs) outs.emplace_back(t.dtype, t.shape);
  std::vector<Tensor*> out_ptrs;
  for (auto& t : outs) out_ptrs.push_back(&t);
  std::vector<uint8_t> scratch(op.scratch_bytes + 64);
  mil::KernelCall call{ctx.slots.data(), out_ptrs.data(), &mil::default_thread_pool(), scratch.data()};
  op.run(call);
  return outs;
}

}  // namespace staticllm::test

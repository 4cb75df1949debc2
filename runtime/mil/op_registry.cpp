// OpRegistry and the shared plan-time helpers every op family uses.
#include <algorithm>

#include "mil/half.h"
#include "mil/op.h"

namespace staticllm::mil {

OpRegistry& OpRegistry::instance() {
  // Built on first use, after all static initialisation, so op files need no
  // self-registering globals (which a static library link would drop).
  static OpRegistry* registry = [] {
    auto* r = new OpRegistry();
    register_elementwise_binary_ops(*r);
    register_elementwise_unary_ops(*r);
    register_reduction_ops(*r);
    register_shape_ops(*r);
    register_slicing_ops(*r);
    register_gather_ops(*r);
    register_select_ops(*r);
    register_linear_ops(*r);
    register_conv_ops(*r);
    register_attention_ops(*r);
    register_quantization_ops(*r);
    register_state_ops(*r);
    register_normalization_ops(*r);
    register_sort_ops(*r);
    register_pooling_ops(*r);
    register_sparsity_ops(*r);
    register_scatter_ops(*r);
    register_rearrange_ops(*r);
    register_pad_ops(*r);
    register_image_ops(*r);
    register_einsum_ops(*r);
    register_recurrent_ops(*r);
    register_random_ops(*r);
    register_value_shaped_ops(*r);
    register_detection_ops(*r);
    register_list_ops(*r);
    return r;
  }();
  return *registry;
}

void OpRegistry::add(const std::string& op_type, OpBuilder builder) {
  for (auto& entry : builders_) {
    if (entry.first == op_type) {
      entry.second = std::move(builder);
      return;
    }
  }
  builders_.emplace_back(op_type, std::move(builder));
}

const OpBuilder* OpRegistry::find(const std::string& op_type) const {
  for (const auto& entry : builders_) {
    if (entry.first == op_type) return &entry.second;
  }
  return nullptr;
}

std::vector<std::string> OpRegistry::op_types() const {
  std::vector<std::string> names;
  for (const auto& entry : builders_) names.push_back(entry.first);
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

bool is_integer(DType t) {
  switch (t) {
    case DType::kInt8:
    case DType::kUInt8:
    case DType::kInt16:
    case DType::kUInt16:
    case DType::kInt32:
    case DType::kInt64: return true;
    default: return false;
  }
}

double element_as_double(const Tensor& t, int64_t i) {
  const void* p = t.data();
  switch (t.dtype()) {
    case DType::kFloat16: return half_to_float(static_cast<const half_bits*>(p)[i]);
    case DType::kFloat32: return static_cast<const float*>(p)[i];
    case DType::kFloat64: return static_cast<const double*>(p)[i];
    case DType::kInt8: return static_cast<const int8_t*>(p)[i];
    case DType::kUInt8: return static_cast<const uint8_t*>(p)[i];
    case DType::kInt16: return static_cast<const int16_t*>(p)[i];
    case DType::kUInt16: return static_cast<const uint16_t*>(p)[i];
    case DType::kInt32: return static_cast<const int32_t*>(p)[i];
    case DType::kInt64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
    case DType::kBool: return static_cast<const uint8_t*>(p)[i] ? 1.0 : 0.0;
  }
  return 0.0;
}

}  // namespace

static const Tensor& require_const(const OpPlanContext& ctx, const std::string& param) {
  if (!ctx.has(param)) ctx.fail("missing parameter '" + param + "'");
  const Tensor* t = ctx.constant(param);
  if (t == nullptr && ctx.is_run_time(param)) ctx.fail_run_time("parameter '" + param + "' must be a constant");
  if (t == nullptr) ctx.fail("parameter '" + param + "' must be a constant");
  return *t;
}

std::string type_string(const ValueType& t) {
  if (!t.is_list || t.shape.empty()) return spec_to_string(t.dtype, t.shape);
  const std::string length = t.shape[0] < 0 ? "?" : std::to_string(t.shape[0]);
  return "list of " + length + " " + spec_to_string(t.dtype, Shape(t.shape.begin() + 1, t.shape.end()));
}

bool fits_declared(const ValueType& declared, const ValueType& got) {
  if (declared.dtype != got.dtype || declared.is_list != got.is_list) return false;
  if (declared.shape == Shape{kAnyRank}) return true;
  if (declared.shape.size() != got.shape.size()) return false;
  for (size_t i = got.is_list ? 1 : 0; i < got.shape.size(); ++i) {
    if (declared.shape[i] != kFlexibleDim && declared.shape[i] != got.shape[i]) return false;
  }
  return true;
}

const Shape& OpPlanContext::declared_shape(size_t i) const {
  const std::vector<ValueType>& declared = declared_outputs();
  if (i >= declared.size()) fail("the program declares no output " + std::to_string(i));
  const Shape& shape = declared[i].shape;
  if (std::any_of(shape.begin(), shape.end(), [](int64_t d) { return d < 0; })) {
    fail_run_time("output " + std::to_string(i) + "'s shape depends on values known only at run time");
  }
  return shape;
}

std::vector<int64_t> OpPlanContext::const_ints(const std::string& param) const {
  const Tensor& t = require_const(*this, param);
  if (!is_integer(t.dtype())) {
    fail("parameter '" + param + "' must be integers, got " + dtype_name(t.dtype()));
  }
  std::vector<int64_t> out(static_cast<size_t>(t.numel()));
  // int64 directly: near its limits it has no exact double, and the cast of
  // the rounded one back to int64 is undefined
  for (int64_t i = 0; i < t.numel(); ++i) {
    out[i] = t.dtype() == DType::kInt64 ? t.data_as<int64_t>()[i] : static_cast<int64_t>(element_as_double(t, i));
  }
  return out;
}

int64_t OpPlanContext::const_int(const std::string& param) const {
  std::vector<int64_t> v = const_ints(param);
  if (v.size() != 1) fail("parameter '" + param + "' must be a single integer");
  return v[0];
}

double OpPlanContext::const_float(const std::string& param) const {
  const Tensor& t = require_const(*this, param);
  if (t.numel() != 1) fail("parameter '" + param + "' must be a scalar");
  if (t.dtype() == DType::kBool) fail("parameter '" + param + "' must be a number");
  return element_as_double(t, 0);
}

bool OpPlanContext::const_bool(const std::string& param) const {
  const Tensor& t = require_const(*this, param);
  if (t.dtype() != DType::kBool || t.numel() != 1) fail("parameter '" + param + "' must be a bool");
  return t.data_as<uint8_t>()[0] != 0;
}

int64_t OpPlanContext::const_int_or(const std::string& param, int64_t fallback) const {
  return has(param) ? const_int(param) : fallback;
}

bool OpPlanContext::const_bool_or(const std::string& param, bool fallback) const {
  return has(param) ? const_bool(param) : fallback;
}

std::vector<int64_t> contiguous_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i) {
    strides[i] = strides[i + 1] * shape[i + 1];
  }
  return strides;
}

bool broadcast_shapes(const Shape& a, const Shape& b, Shape* out) {
  size_t rank = std::max(a.size(), b.size());
  Shape result(rank, 1);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) return false;
    result[i] = da == 1 ? db : da;
  }
  *out = std::move(result);
  return true;
}

int64_t normalize_axis(const OpPlanContext& ctx, int64_t axis, int64_t rank) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= std::max<int64_t>(rank, 1)) {
    ctx.fail("axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  }
  return a;
}

}  // namespace staticllm::mil

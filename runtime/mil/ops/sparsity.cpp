// Sparse weight decompression ops, folded when a method loads:
// constexpr_sparse_to_dense (iOS16: a packed byte mask and a shape; iOS18: a
// uint1 mask of the output shape), and the iOS18 sparse-to-sparse steps
// constexpr_lut_to_sparse and constexpr_sparse_blockwise_shift_scale, whose
// outputs (a mask and the nonzero values in row-major order of the mask)
// feed a constexpr_sparse_to_dense. Every count is checked against the mask
// before a value is read.
#include <algorithm>
#include <cstring>

#include "mil/ops/compression_util.h"
#include "mil/weight_store.h"

namespace staticllm::mil {

namespace {

// The set positions of a mask given one value per element (0 / 1).
std::vector<int64_t> set_positions(const Tensor& mask) {
  std::vector<int64_t> pos;
  const auto* m = mask.data_as<uint8_t>();
  for (int64_t i = 0; i < mask.numel(); ++i)
    if (m[i] != 0) pos.push_back(i);
  return pos;
}

void require_count(const std::string& where, size_t set, int64_t values) {
  if (static_cast<int64_t>(set) != values) {
    throw BundleError("op '" + where + "': the mask sets " + std::to_string(set) + " elements but there are " +
                      std::to_string(values) + " nonzero values");
  }
}

void require_mask(OpPlanContext& ctx, const std::string& param) {
  DType t = ctx.type(param).dtype;
  if (t != DType::kUInt8) ctx.fail("'" + param + "' must be a uint1 (or uint8) mask");
}

// out = zeros of the mask's shape with `values` at the set positions.
PlannedOp plan_scatter(OpPlanContext& ctx, const ValueType& vt, Shape shape, bool packed_bits) {
  if (vt.shape.size() != 1) ctx.fail("nonzero_data must be rank 1");
  const int64_t n = shape_numel(shape), count = vt.shape[0];
  PlannedOp op;
  op.outputs.push_back({vt.dtype, shape});
  int ms = ctx.input("mask"), vs = ctx.input("nonzero_data");
  std::string where = ctx.op_name();
  const size_t elem = dtype_size(vt.dtype);
  op.run = [=](const KernelCall& call) {
    Tensor mask = packed_bits ? unpack_sub_byte(call.in(ms).data_as<uint8_t>(), n, 1, false, {n}) : call.in(ms);
    std::vector<int64_t> pos = set_positions(mask);
    require_count(where, pos.size(), count);
    auto* dst = static_cast<uint8_t*>(call.out(0).data());
    std::memset(dst, 0, static_cast<size_t>(n) * elem);
    const auto* src = static_cast<const uint8_t*>(call.in(vs).data());
    for (size_t j = 0; j < pos.size(); ++j) std::memcpy(dst + pos[j] * elem, src + j * elem, elem);
  };
  return op;
}

PlannedOp build_sparse_to_dense(OpPlanContext& ctx) {
  require_mask(ctx, "mask");
  const ValueType& vt = ctx.type("nonzero_data");
  if (!ctx.has("shape")) return plan_scatter(ctx, vt, ctx.type("mask").shape, false);
  // iOS16: mask [ceil(n / 8)] bytes, bit i (least significant first) for element i
  Shape shape = ctx.const_ints("shape");
  for (int64_t d : shape)
    if (d < 0) ctx.fail("negative output dimension");
  const ValueType& mt = ctx.type("mask");
  if (mt.shape.size() != 1 || mt.shape[0] != (shape_numel(shape) + 7) / 8) {
    ctx.fail("a mask of " + shape_to_string(mt.shape) + " bytes does not cover shape " + shape_to_string(shape));
  }
  return plan_scatter(ctx, vt, shape, true);
}

// Lookup-table decompression of the nonzero indices only.
PlannedOp build_lut_to_sparse(OpPlanContext& ctx) {
  require_mask(ctx, "indices_mask");
  const ValueType& mt = ctx.type("indices_mask");
  const ValueType& it = ctx.type("indices_nonzero_data");
  const ValueType& lt = ctx.type("lut");
  const int64_t rank = static_cast<int64_t>(mt.shape.size());
  if (it.shape.size() != 1) ctx.fail("indices_nonzero_data must be rank 1");
  if (static_cast<int64_t>(lt.shape.size()) != rank + 2) ctx.fail("lut must have the mask's rank + 2");
  const int64_t palette = lt.shape[rank], vec = lt.shape[rank + 1];
  const int64_t axis = vec > 1 || ctx.has("vector_axis") ? normalize_axis(ctx, ctx.const_int("vector_axis"), rank) : 0;
  BlockIndex groups;
  if (!groups.init(mt.shape, Shape(lt.shape.begin(), lt.shape.begin() + rank))) {
    ctx.fail("lut groups do not tile the mask");
  }
  Shape out_mask = mt.shape;
  out_mask[axis] *= vec;
  const int64_t count = it.shape[0], dim = mt.shape[axis];
  const int64_t after = shape_numel(Shape(mt.shape.begin() + axis + 1, mt.shape.end()));
  PlannedOp op;
  op.outputs.push_back({mt.dtype, out_mask});
  op.outputs.push_back({lt.dtype, {count * vec}});
  int ms = ctx.input("indices_mask"), is = ctx.input("indices_nonzero_data"), ls = ctx.input("lut");
  std::string where = ctx.op_name();
  op.run = [=](const KernelCall& call) {
    const Tensor& mask = call.in(ms);
    std::vector<int64_t> pos = set_positions(mask);
    require_count(where, pos.size(), count);
    std::vector<float> nonzero = as_floats(call.in(is)), lut = as_floats(call.in(ls));
    std::vector<float> idx(static_cast<size_t>(mask.numel()), 0.f);
    for (size_t j = 0; j < pos.size(); ++j) idx[pos[j]] = nonzero[j];
    std::vector<float> dense(idx.size() * static_cast<size_t>(vec));
    expand_palette(idx, lut, groups, palette, vec, dim, after, dense.data(), where);
    // the mask repeated along the vector axis, and the values where it is set
    std::vector<float> big_mask(dense.size());
    const auto* m = mask.data_as<uint8_t>();
    for (int64_t i = 0; i < mask.numel(); ++i) {
      const int64_t before = i / (dim * after), j = (i / after) % dim, rest = i % after;
      for (int64_t v = 0; v < vec; ++v) big_mask[(before * dim * vec + j * vec + v) * after + rest] = m[i] != 0;
    }
    std::vector<float> values;
    for (size_t i = 0; i < dense.size(); ++i)
      if (big_mask[i] != 0) values.push_back(dense[i]);
    store_floats(call.out(0), big_mask);
    store_floats(call.out(1), values);
  };
  return op;
}

// (data - offset) * scale for the nonzero data, per block of the mask.
PlannedOp build_sparse_shift_scale(OpPlanContext& ctx) {
  require_mask(ctx, "data_mask");
  const ValueType& mt = ctx.type("data_mask");
  const ValueType& dt = ctx.type("nonzero_data");
  const ValueType& st = ctx.type("scale");
  if (dt.shape.size() != 1) ctx.fail("nonzero_data must be rank 1");
  if (!is_float_dtype(st.dtype)) ctx.fail("scale must be float");
  BlockIndex scale_index, offset_index;
  if (!scale_index.init(mt.shape, st.shape)) ctx.fail("scale does not tile the mask");
  const bool has_offset = ctx.has("offset");
  if (has_offset && !offset_index.init(mt.shape, ctx.type("offset").shape)) ctx.fail("offset does not tile the mask");
  const int64_t count = dt.shape[0];
  PlannedOp op;
  op.outputs.push_back(mt);
  op.outputs.push_back({st.dtype, {count}});
  int ms = ctx.input("data_mask"), ds = ctx.input("nonzero_data"), ss = ctx.input("scale");
  int os = has_offset ? ctx.input("offset") : -1;
  std::string where = ctx.op_name();
  op.run = [=](const KernelCall& call) {
    const Tensor& mask = call.in(ms);
    std::vector<int64_t> pos = set_positions(mask);
    require_count(where, pos.size(), count);
    std::vector<float> data = as_floats(call.in(ds)), scale = as_floats(call.in(ss));
    std::vector<float> offset = os >= 0 ? as_floats(call.in(os)) : std::vector<float>();
    std::vector<int64_t> scale_of(static_cast<size_t>(mask.numel())), offset_of(scale_of.size(), 0);
    scale_index.for_each([&](int64_t i, int64_t si) { scale_of[i] = si; });
    if (os >= 0) offset_index.for_each([&](int64_t i, int64_t oi) { offset_of[i] = oi; });
    std::vector<float> values(pos.size());
    for (size_t j = 0; j < pos.size(); ++j) {
      float shift = os >= 0 ? offset[offset_of[pos[j]]] : 0.f;
      values[j] = (data[j] - shift) * scale[scale_of[pos[j]]];
    }
    std::memcpy(call.out(0).data(), mask.data(), mask.nbytes());
    store_floats(call.out(1), values);
  };
  return op;
}

}  // namespace

void register_sparsity_ops(OpRegistry& r) {
  r.add("constexpr_sparse_to_dense", build_sparse_to_dense);
  r.add("constexpr_lut_to_sparse", build_lut_to_sparse);
  r.add("constexpr_sparse_blockwise_shift_scale", build_sparse_shift_scale);
}

}  // namespace staticllm::mil

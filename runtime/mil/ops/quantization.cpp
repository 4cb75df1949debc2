// Weight decompression ops. Their inputs are all constants, so the planner
// folds them once when a method loads; the kernels favour clarity over speed.
#include <algorithm>

#include "mil/ops/elementwise_util.h"
#include "staticllm/errors.h"

namespace staticllm::mil {

namespace {

// Maps each element of `shape` to the element of a block-broadcast tensor of
// shape `small` (each dim of shape a multiple of the matching dim of small).
struct BlockIndex {
  Shape shape, small;
  std::vector<int64_t> block, small_strides;

  bool init(const Shape& big, const Shape& s) {
    if (big.size() != s.size()) return false;
    shape = big;
    small = s;
    block.resize(big.size());
    for (size_t d = 0; d < big.size(); ++d) {
      if (s[d] <= 0 || big[d] % s[d] != 0) return false;
      block[d] = big[d] / s[d];
    }
    small_strides = contiguous_strides(s);
    return true;
  }

  template <typename F>
  void for_each(F&& fn) const {  // fn(element index, small index)
    int64_t n = shape_numel(shape), rank = static_cast<int64_t>(shape.size());
    std::vector<int64_t> idx(rank, 0);
    for (int64_t i = 0; i < n; ++i) {
      int64_t si = 0;
      for (int64_t d = 0; d < rank; ++d) si += (idx[d] / block[d]) * small_strides[d];
      fn(i, si);
      for (int64_t d = rank - 1; d >= 0; --d) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
  }
};

std::vector<float> as_floats(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (int64_t s = 0; s < t.numel(); s += kBlock) {
    int64_t len = std::min(kBlock, t.numel() - s);
    const float* p = load_run<float>(t.dtype(), t.data(), s, 1, len, v.data() + s);
    if (p != v.data() + s) std::copy(p, p + len, v.data() + s);
  }
  return v;
}

void store_floats(Tensor& out, const std::vector<float>& v) {
  store_run<float>(out.dtype(), out.data(), 0, static_cast<int64_t>(v.size()), v.data());
}

PlannedOp build_blockwise_shift_scale(OpPlanContext& ctx) {
  const ValueType& dt = ctx.type("data");
  const ValueType& st = ctx.type("scale");
  if (!is_float_dtype(st.dtype)) ctx.fail("scale must be float");
  BlockIndex scale_index;
  if (!scale_index.init(dt.shape, st.shape)) {
    ctx.fail("scale " + shape_to_string(st.shape) + " does not tile data " + shape_to_string(dt.shape));
  }
  bool has_offset = ctx.has("offset");
  BlockIndex offset_index;
  if (has_offset && !offset_index.init(dt.shape, ctx.type("offset").shape)) ctx.fail("offset does not tile data");
  int ds = ctx.input("data"), ss = ctx.input("scale"), os = has_offset ? ctx.input("offset") : -1;
  PlannedOp op;
  op.outputs.push_back({st.dtype, dt.shape});
  op.run = [=](const KernelCall& call) {
    std::vector<float> data = as_floats(call.in(ds)), scale = as_floats(call.in(ss));
    std::vector<float> offset = os >= 0 ? as_floats(call.in(os)) : std::vector<float>();
    std::vector<float> out(data.size());
    if (os >= 0) {
      std::vector<int64_t> off_of(data.size());
      offset_index.for_each([&](int64_t i, int64_t si) { off_of[i] = si; });
      scale_index.for_each([&](int64_t i, int64_t si) { out[i] = (data[i] - offset[off_of[i]]) * scale[si]; });
    } else {
      scale_index.for_each([&](int64_t i, int64_t si) { out[i] = data[i] * scale[si]; });
    }
    store_floats(call.out(0), out);
  };
  return op;
}

PlannedOp build_lut_to_dense(OpPlanContext& ctx) {
  const ValueType& it = ctx.type("indices");
  const ValueType& lt = ctx.type("lut");
  size_t rank = it.shape.size();
  if (lt.shape.size() != rank + 2) ctx.fail("lut must have the indices' rank + 2");
  if (lt.shape.back() != 1) ctx.fail("vector palettization (VECTOR_SIZE > 1) is not supported");
  int64_t palette = lt.shape[rank];
  Shape groups(lt.shape.begin(), lt.shape.begin() + rank);
  BlockIndex group_index;
  if (!group_index.init(it.shape, groups)) ctx.fail("lut groups do not tile the indices");
  int is = ctx.input("indices"), ls = ctx.input("lut");
  std::string where = ctx.op_name();
  PlannedOp op;
  op.outputs.push_back({lt.dtype, it.shape});
  op.run = [=](const KernelCall& call) {
    std::vector<float> idx = as_floats(call.in(is)), lut = as_floats(call.in(ls));
    std::vector<float> out(idx.size());
    group_index.for_each([&](int64_t i, int64_t g) {
      auto k = static_cast<int64_t>(idx[i]);
      if (k < 0 || k >= palette) throw BundleError("op '" + where + "': palette index out of range");
      out[i] = lut[g * palette + k];
    });
    store_floats(call.out(0), out);
  };
  return op;
}

PlannedOp build_affine_dequantize(OpPlanContext& ctx) {
  const ValueType& qt = ctx.type("quantized_data");
  const ValueType& st = ctx.type("scale");
  int64_t rank = static_cast<int64_t>(qt.shape.size());
  int64_t axis = normalize_axis(ctx, ctx.const_int_or("axis", 0), rank);
  // scale / zero_point: scalar or one value per slice along `axis`.
  auto tile_shape = [&](const ValueType& t) {
    Shape s(rank, 1);
    if (shape_numel(t.shape) == 1) return s;
    if (shape_numel(t.shape) != qt.shape[axis]) ctx.fail("scale/zero_point size must match the axis");
    s[axis] = qt.shape[axis];
    return s;
  };
  BlockIndex si, zi;
  si.init(qt.shape, tile_shape(st));
  zi.init(qt.shape, tile_shape(ctx.type("zero_point")));
  int qs = ctx.input("quantized_data"), ss = ctx.input("scale"), zs = ctx.input("zero_point");
  PlannedOp op;
  op.outputs.push_back({st.dtype, qt.shape});
  op.run = [=](const KernelCall& call) {
    std::vector<float> q = as_floats(call.in(qs)), s = as_floats(call.in(ss)), z = as_floats(call.in(zs));
    std::vector<int64_t> zof(q.size());
    zi.for_each([&](int64_t i, int64_t k) { zof[i] = k; });
    std::vector<float> out(q.size());
    si.for_each([&](int64_t i, int64_t k) { out[i] = (q[i] - z[zof[i]]) * s[k]; });
    store_floats(call.out(0), out);
  };
  return op;
}

}  // namespace

void register_quantization_ops(OpRegistry& r) {
  r.add("constexpr_blockwise_shift_scale", build_blockwise_shift_scale);
  r.add("constexpr_lut_to_dense", build_lut_to_dense);
  r.add("constexpr_affine_dequantize", build_affine_dequantize);
}

}  // namespace staticllm::mil

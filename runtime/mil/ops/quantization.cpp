// Weight decompression ops. Their inputs are all constants, so the planner
// folds them when a method loads. Where the result has the [rows, cols]
// group structure the compressed kernels read (kernels/compressed.h), the
// builder describes it and the planner keeps the weight as stored; the
// dense kernels below serve every other case and favour clarity over speed.
#include <algorithm>

#include "mil/kernels/compressed.h"
#include "mil/ops/elementwise_util.h"
#include "mil/weight_store.h"
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

using WeightPtr = std::shared_ptr<CompressedWeight>;

// Sets w's [rows, cols] view of `big` and the group grid of a per-group
// parameter of shape `small`; false unless groups span whole trailing
// dimensions (small[d] == 1 for d >= 2), as the kernels' grid needs.
bool set_grid(const Shape& big, const Shape& small, CompressedWeight* w) {
  if (big.size() < 2 || small.size() != big.size()) return false;
  for (size_t d = 2; d < big.size(); ++d) {
    if (small[d] != 1) return false;
  }
  for (size_t d = 0; d < 2; ++d) {
    if (big[d] <= 0 || small[d] <= 0 || big[d] % small[d] != 0) return false;
  }
  w->rows = big[0];
  w->cols = shape_numel(big) / big[0];
  w->row_block = big[0] / small[0];
  w->grid_cols = small[1];
  w->col_block = w->cols / small[1];
  return true;
}

// The integer codes of `param` as stored: packed sub-byte, or one per byte.
bool set_codes(OpPlanContext& ctx, const std::string& param, CompressedWeight* w) {
  if (const PackedInts* p = ctx.packed(param)) {
    w->codes = p->bytes.data_as<uint8_t>();
    w->bits = p->bits;
    w->is_signed = p->is_signed;
    w->keep.push_back(p->bytes);
    return true;
  }
  if (ctx.compressed(param)) return false;  // itself a decompression: read dense
  const Tensor* t = ctx.constant(param);
  if (t == nullptr || (t->dtype() != DType::kInt8 && t->dtype() != DType::kUInt8)) return false;
  w->codes = t->data_as<uint8_t>();
  w->bits = 8;
  w->is_signed = t->dtype() == DType::kInt8;
  w->keep.push_back(*t);
  return true;
}

// A small per-group constant (scale, offset, table), unpacked if sub-byte.
const void* group_values(OpPlanContext& ctx, const std::string& param, CompressedWeight* w, DType* dtype) {
  Tensor t;
  if (const PackedInts* p = ctx.packed(param)) {
    t = p->unpack();
  } else if (const Tensor* c = ctx.constant(param)) {
    t = *c;
  } else {
    return nullptr;
  }
  DType d = t.dtype();
  if (d != DType::kFloat16 && d != DType::kFloat32 && d != DType::kInt8 && d != DType::kUInt8) return nullptr;
  *dtype = d;
  w->keep.push_back(t);
  return t.data();
}

WeightPtr describe_shift_scale(OpPlanContext& ctx, const ValueType& out) {
  auto w = std::make_shared<CompressedWeight>();
  w->kind = CompressedWeight::Kind::kScale;
  w->type = out;
  const ValueType& st = ctx.type("scale");
  if (!set_grid(ctx.type("data").shape, st.shape, w.get()) || !set_codes(ctx, "data", w.get())) return nullptr;
  w->scale = group_values(ctx, "scale", w.get(), &w->scale_dtype);
  if (w->scale == nullptr || !is_float_dtype(w->scale_dtype)) return nullptr;
  if (ctx.has("offset")) {
    if (ctx.type("offset").shape != st.shape) return nullptr;
    w->offset = group_values(ctx, "offset", w.get(), &w->offset_dtype);
    if (w->offset == nullptr) return nullptr;
  }
  return compressed_kernel_supports(*w) ? w : nullptr;
}

WeightPtr describe_lut(OpPlanContext& ctx, const ValueType& out) {
  const ValueType& it = ctx.type("indices");
  const ValueType& lt = ctx.type("lut");
  const size_t rank = it.shape.size();
  auto w = std::make_shared<CompressedWeight>();
  w->kind = CompressedWeight::Kind::kLut;
  w->type = out;
  Shape groups(lt.shape.begin(), lt.shape.begin() + rank);
  if (!set_grid(it.shape, groups, w.get()) || !set_codes(ctx, "indices", w.get()) || w->is_signed) return nullptr;
  if (lt.shape[rank] != (int64_t{1} << w->bits)) return nullptr;  // every code indexes the table
  w->lut = group_values(ctx, "lut", w.get(), &w->lut_dtype);
  if (w->lut == nullptr || !is_float_dtype(w->lut_dtype)) return nullptr;
  return compressed_kernel_supports(*w) ? w : nullptr;
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
  PlannedOp op;
  op.outputs.push_back({st.dtype, dt.shape});
  op.compressed = describe_shift_scale(ctx, op.outputs[0]);
  int ds = ctx.input("data"), ss = ctx.input("scale"), os = has_offset ? ctx.input("offset") : -1;
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
  PlannedOp op;
  op.outputs.push_back({lt.dtype, it.shape});
  op.compressed = describe_lut(ctx, op.outputs[0]);
  int is = ctx.input("indices"), ls = ctx.input("lut");
  std::string where = ctx.op_name();
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

// (q - zero_point) * scale with both per tensor or both along the same axis.
WeightPtr describe_affine(OpPlanContext& ctx, const ValueType& out, const Shape& tiles) {
  auto w = std::make_shared<CompressedWeight>();
  w->kind = CompressedWeight::Kind::kScale;
  w->type = out;
  if (!set_grid(ctx.type("quantized_data").shape, tiles, w.get()) || !set_codes(ctx, "quantized_data", w.get())) {
    return nullptr;
  }
  w->scale = group_values(ctx, "scale", w.get(), &w->scale_dtype);
  w->offset = group_values(ctx, "zero_point", w.get(), &w->offset_dtype);
  if (w->scale == nullptr || !is_float_dtype(w->scale_dtype) || w->offset == nullptr) return nullptr;
  return compressed_kernel_supports(*w) ? w : nullptr;
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
  Shape s_tiles = tile_shape(st), z_tiles = tile_shape(ctx.type("zero_point"));
  si.init(qt.shape, s_tiles);
  zi.init(qt.shape, z_tiles);
  PlannedOp op;
  op.outputs.push_back({st.dtype, qt.shape});
  if (s_tiles == z_tiles) op.compressed = describe_affine(ctx, op.outputs[0], s_tiles);
  int qs = ctx.input("quantized_data"), ss = ctx.input("scale"), zs = ctx.input("zero_point");
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

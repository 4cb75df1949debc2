// Weight decompression ops. Their inputs are all constants, so the planner
// folds them when a method loads. Where the result has the [rows, cols]
// group structure the compressed kernels read (kernels/compressed.h), the
// builder describes it and the planner keeps the weight as stored; the
// dense kernels below serve every other case and favour clarity over speed.
#include <algorithm>
#include <cmath>

#include "mil/kernels/compressed.h"
#include "mil/ops/compression_util.h"
#include "mil/ops/elementwise_util.h"
#include "mil/weight_store.h"
#include "staticllm/errors.h"

namespace staticllm::mil {

namespace {

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

// iOS16 form: `indices` packed LSB first in bytes, one 1-D `lut` of 2^bits
// entries for the whole tensor, and the output `shape`.
PlannedOp build_lut_to_dense_ios16(OpPlanContext& ctx) {
  const ValueType& lt = ctx.type("lut");
  const ValueType& it = ctx.type("indices");
  if (lt.shape.size() != 1 || it.shape.size() != 1) ctx.fail("iOS16 lut and indices must be rank 1");
  const int64_t palette = lt.shape[0];
  int bits = 0;
  while ((int64_t{1} << bits) < palette) ++bits;
  if ((int64_t{1} << bits) != palette || bits < 1 || bits > 8) ctx.fail("lut size must be 2, 4, ..., 256");
  Shape shape = ctx.const_ints("shape");
  for (int64_t d : shape)
    if (d < 0) ctx.fail("negative output dimension");
  const int64_t n = shape_numel(shape);
  if ((n * bits + 7) / 8 != it.shape[0]) {
    ctx.fail(std::to_string(it.shape[0]) + " index bytes cannot hold " + std::to_string(n) + " " +
             std::to_string(bits) + "-bit indices");
  }
  PlannedOp op;
  op.outputs.push_back({lt.dtype, shape});
  int is = ctx.input("indices"), ls = ctx.input("lut");
  op.run = [=](const KernelCall& call) {
    Tensor codes = unpack_sub_byte(call.in(is).data_as<uint8_t>(), n, bits, false, {n});
    std::vector<float> lut = as_floats(call.in(ls)), out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out[i] = lut[codes.data_as<uint8_t>()[i]];
    store_floats(call.out(0), out);
  };
  return op;
}

// iOS18 form: `lut` [*groups, 2^bits, VECTOR_SIZE]; each index picks a
// vector of its group's table, laid along `vector_axis` of the output.
PlannedOp build_lut_to_dense(OpPlanContext& ctx) {
  if (ctx.has("shape")) return build_lut_to_dense_ios16(ctx);
  const ValueType& it = ctx.type("indices");
  const ValueType& lt = ctx.type("lut");
  const int64_t rank = static_cast<int64_t>(it.shape.size());
  if (static_cast<int64_t>(lt.shape.size()) != rank + 2) ctx.fail("lut must have the indices' rank + 2");
  const int64_t palette = lt.shape[rank], vec = lt.shape[rank + 1];
  const int64_t axis = vec > 1 || ctx.has("vector_axis") ? normalize_axis(ctx, ctx.const_int("vector_axis"), rank) : 0;
  Shape groups(lt.shape.begin(), lt.shape.begin() + rank);
  BlockIndex group_index;
  if (!group_index.init(it.shape, groups)) ctx.fail("lut groups do not tile the indices");
  Shape out = it.shape;
  out[axis] *= vec;
  PlannedOp op;
  op.outputs.push_back({lt.dtype, out});
  if (vec == 1) op.compressed = describe_lut(ctx, op.outputs[0]);
  int is = ctx.input("indices"), ls = ctx.input("lut");
  std::string where = ctx.op_name();
  const int64_t after = shape_numel(Shape(it.shape.begin() + axis + 1, it.shape.end()));
  const int64_t dim = it.shape[axis];
  op.run = [=](const KernelCall& call) {
    std::vector<float> idx = as_floats(call.in(is)), lut = as_floats(call.in(ls));
    std::vector<float> dense(idx.size() * static_cast<size_t>(vec));
    expand_palette(idx, lut, group_index, palette, vec, dim, after, dense.data(), where);
    store_floats(call.out(0), dense);
  };
  return op;
}

// fp16 constant to fp32 (the only cast MIL defines here).
PlannedOp build_constexpr_cast(OpPlanContext& ctx) {
  const ValueType& st = ctx.type("source_val");
  std::string name = ctx.const_string("output_dtype");
  if (name != "fp32") ctx.fail("output_dtype must be fp32, got '" + name + "'");
  if (!is_float_dtype(st.dtype)) ctx.fail("source_val must be a float tensor");
  PlannedOp op;
  op.outputs.push_back({DType::kFloat32, st.shape});
  int ss = ctx.input("source_val");
  op.run = [ss](const KernelCall& call) { store_floats(call.out(0), as_floats(call.in(ss))); };
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

// scale and zero_point of quantize / dequantize: scalars, or one value per
// index of `axis`. Returns per-element accessors as (outer, n, inner) strides.
struct AxisParams {
  std::vector<float> scale, zero;
  int64_t n = 1, inner = 1;  // index of element i: (i / inner) % n, or 0 for scalars
  float scale_at(int64_t i) const { return scale[scale.size() == 1 ? 0 : (i / inner) % n]; }
  float zero_at(int64_t i) const { return zero.empty() ? 0.f : zero[zero.size() == 1 ? 0 : (i / inner) % n]; }
};

AxisParams axis_params(OpPlanContext& ctx, const Shape& shape) {
  AxisParams p;
  p.scale = const_floats(ctx, "scale");
  if (ctx.has("zero_point")) p.zero = const_floats(ctx, "zero_point");
  bool vector = ctx.type("scale").shape.size() == 1;
  if (vector) {
    int64_t rank = static_cast<int64_t>(shape.size());
    int64_t axis = normalize_axis(ctx, ctx.const_int("axis"), rank);
    p.n = shape[axis];
    p.inner = shape_numel(Shape(shape.begin() + axis + 1, shape.end()));
  }
  auto size_ok = [&](size_t got) { return got == 1 || static_cast<int64_t>(got) == p.n; };
  if (!ctx.type("scale").shape.empty() && !vector) ctx.fail("scale must be a scalar or a vector");
  if (p.scale.empty() || !size_ok(p.scale.size()) || (!p.zero.empty() && !size_ok(p.zero.size()))) {
    ctx.fail("scale and zero_point need one value, or one per index of the axis");
  }
  return p;
}

// clip(round_half_even(x / scale) + zero_point) to int8 or uint8.
PlannedOp build_quantize(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("input");
  if (!is_float_dtype(xt.dtype)) ctx.fail("input must be fp16 or fp32");
  std::string name = ctx.const_string("output_dtype");
  if (name != "int8" && name != "uint8") ctx.fail("output_dtype must be int8 or uint8, got '" + name + "'");
  DType out = name == "int8" ? DType::kInt8 : DType::kUInt8;
  AxisParams p = axis_params(ctx, xt.shape);
  const float lo = out == DType::kInt8 ? -128.f : 0.f, hi = out == DType::kInt8 ? 127.f : 255.f;
  const int64_t n = shape_numel(xt.shape);
  int xs = ctx.input("input");
  PlannedOp op;
  op.outputs.push_back({out, xt.shape});
  op.scratch_bytes = static_cast<size_t>(n) * sizeof(float);
  op.run = [=](const KernelCall& call) {
    auto* buf = static_cast<float*>(call.scratch);
    const float* x = floats_of(call.in(xs), buf);
    float q[kBlock];
    for (int64_t s = 0; s < n; s += kBlock) {
      int64_t len = std::min(kBlock, n - s);
      for (int64_t i = 0; i < len; ++i) {
        float v = std::nearbyint(x[s + i] / p.scale_at(s + i)) + p.zero_at(s + i);
        q[i] = std::isnan(v) ? 0.f : std::min(std::max(v, lo), hi);
      }
      store_run<float>(out, call.out(0).data(), s, len, q);
    }
  };
  return op;
}

// (q - zero_point) * scale, in the scale's dtype.
PlannedOp build_dequantize(OpPlanContext& ctx) {
  const ValueType& qt = ctx.type("input");
  if (qt.dtype != DType::kInt8 && qt.dtype != DType::kUInt8) ctx.fail("input must be int8 or uint8");
  DType out = ctx.type("scale").dtype;
  if (!is_float_dtype(out)) ctx.fail("scale must be fp16 or fp32");
  AxisParams p = axis_params(ctx, qt.shape);
  const int64_t n = shape_numel(qt.shape);
  int qs = ctx.input("input");
  PlannedOp op;
  op.outputs.push_back({out, qt.shape});
  op.run = [=](const KernelCall& call) {
    float qb[kBlock], y[kBlock];
    for (int64_t s = 0; s < n; s += kBlock) {
      int64_t len = std::min(kBlock, n - s);
      const float* q = load_run<float>(qt.dtype, call.in(qs).data(), s, 1, len, qb);
      for (int64_t i = 0; i < len; ++i) y[i] = (q[i] - p.zero_at(s + i)) * p.scale_at(s + i);
      store_run<float>(out, call.out(0).data(), s, len, y);
    }
  };
  return op;
}

}  // namespace

void register_quantization_ops(OpRegistry& r) {
  r.add("constexpr_blockwise_shift_scale", build_blockwise_shift_scale);
  r.add("constexpr_lut_to_dense", build_lut_to_dense);
  r.add("constexpr_affine_dequantize", build_affine_dequantize);
  r.add("constexpr_cast", build_constexpr_cast);
  r.add("quantize", build_quantize);
  r.add("dequantize", build_dequantize);
}

}  // namespace staticllm::mil

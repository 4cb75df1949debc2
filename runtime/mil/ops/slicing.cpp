// Ops that cut or join tensors: slice_by_index, slice_by_size (begin and
// end constant or known at run time), slice_update, split, concat (also
// interleaved), stack.
#include <algorithm>
#include <cstring>

#include "mil/ops/elementwise_util.h"
#include "mil/ops/indices.h"
#include "mil/ops/strided_copy.h"
#include "staticllm/errors.h"

namespace staticllm::mil {

namespace {

std::vector<bool> mask_or(const OpPlanContext& ctx, const char* name, size_t rank) {
  std::vector<bool> m(rank, false);
  if (!ctx.has(name)) return m;
  const Tensor* t = ctx.constant(name);
  if (t == nullptr || t->dtype() != DType::kBool || static_cast<size_t>(t->numel()) != rank) {
    ctx.fail(std::string("'") + name + "' must be a constant bool list of length " + std::to_string(rank));
  }
  for (size_t i = 0; i < rank; ++i) m[i] = t->data_as<uint8_t>()[i] != 0;
  return m;
}

// numpy's x[begin:end:stride] on one axis of size n, with MIL's masks
// (begin_mask / end_mask: the whole axis that side; squeeze_mask: the one
// element at begin). stride is not 0.
struct AxisSlice {
  int64_t begin = 0, len = 0, step = 1;
};

AxisSlice slice_axis(int64_t n, int64_t begin, int64_t end, int64_t stride, bool bmask, bool emask, bool smask) {
  // A step longer than the axis takes at most one element either way;
  // clamped, the length and offset arithmetic below cannot overflow.
  const int64_t s = std::clamp<int64_t>(stride, -(n + 1), n + 1);
  auto clamp = [&](int64_t v) {  // negative indices count from the end, then clamp into the axis
    if (v < 0) v = v < -n ? -n - 1 : v + n;
    int64_t lo = s > 0 ? 0 : -1, hi = s > 0 ? n : n - 1;
    return std::min(std::max(v, lo), hi);
  };
  int64_t b = bmask ? (s > 0 ? 0 : n - 1) : clamp(begin);
  int64_t e = emask ? (s > 0 ? n : -1) : clamp(end);
  if (smask) e = b + (s > 0 ? 1 : -1);
  int64_t len = s > 0 ? std::max<int64_t>(0, (e - b + s - 1) / s) : std::max<int64_t>(0, (b - e - s - 1) / (-s));
  return {b, len, s};
}

constexpr size_t kMaxSliceRank = 8;

// Copies a region of `rank` dims (lengths len) between strided layouts
// (element strides and offsets); the innermost run is memcpy'd when both
// sides are contiguous there.
void copy_region(size_t rank, const int64_t* len, const uint8_t* src, int64_t soff, const int64_t* sstr, uint8_t* dst,
                 int64_t doff, const int64_t* dstr, size_t elem) {
  int64_t total = 1;
  for (size_t d = 0; d < rank; ++d) total *= len[d];
  if (total == 0) return;
  const auto esz = static_cast<int64_t>(elem);
  if (rank == 0) {
    std::memcpy(dst + doff * esz, src + soff * esz, elem);
    return;
  }
  const int64_t inner = len[rank - 1];
  const bool run = sstr[rank - 1] == 1 && dstr[rank - 1] == 1;
  int64_t idx[kMaxSliceRank] = {0};
  for (int64_t o = 0; o < total / inner; ++o) {
    if (run) {
      std::memcpy(dst + doff * esz, src + soff * esz, static_cast<size_t>(inner) * elem);
    } else {
      for (int64_t k = 0; k < inner; ++k)
        std::memcpy(dst + (doff + k * dstr[rank - 1]) * esz, src + (soff + k * sstr[rank - 1]) * esz, elem);
    }
    for (int64_t d = static_cast<int64_t>(rank) - 2; d >= 0; --d) {
      soff += sstr[d];
      doff += dstr[d];
      if (++idx[d] < len[d]) break;
      soff -= sstr[d] * len[d];
      doff -= dstr[d] * len[d];
      idx[d] = 0;
    }
  }
}

// A slice_by_index / slice_update region whose begin and end may only be
// known when the op runs: everything else is fixed at plan time, including
// the lengths the region must have (the program's declared shape).
struct SliceRegion {
  size_t rank = 0;
  int64_t dim[kMaxSliceRank] = {}, stride[kMaxSliceRank] = {}, want_len[kMaxSliceRank] = {};
  bool bmask[kMaxSliceRank] = {}, emask[kMaxSliceRank] = {}, smask[kMaxSliceRank] = {};
  std::string where;

  // Resolves begin / end (any integer tensors) into start offsets and steps;
  // InputError when the region does not have the planned lengths.
  void resolve(const Tensor& begin, const Tensor& end, int64_t* start, int64_t* step) const {
    for (size_t d = 0; d < rank; ++d) {
      AxisSlice a = slice_axis(dim[d], read_index(begin, static_cast<int64_t>(d)),
                               read_index(end, static_cast<int64_t>(d)), stride[d], bmask[d], emask[d], smask[d]);
      if (a.len != want_len[d]) {
        throw InputError(where + ": begin " + std::to_string(read_index(begin, static_cast<int64_t>(d))) + ", end " +
                         std::to_string(read_index(end, static_cast<int64_t>(d))) + " on axis " + std::to_string(d) +
                         " select " + std::to_string(a.len) + " elements, the program expects " +
                         std::to_string(want_len[d]));
      }
      start[d] = a.begin;
      step[d] = a.step;
    }
  }
};

std::vector<int64_t> int_list_or(const OpPlanContext& ctx, const char* name, size_t rank, int64_t fallback) {
  if (!ctx.has(name)) return std::vector<int64_t>(rank, fallback);
  std::vector<int64_t> v = ctx.const_ints(name);
  if (v.size() != rank)
    ctx.fail(std::string("'") + name + "' needs one entry per input axis (" + std::to_string(rank) + ")");
  return v;
}

// Plans the region of x that begin / end / stride / masks select; `lens`
// gives the lengths it must have when begin or end are run-time values.
SliceRegion plan_region(const OpPlanContext& ctx, const ValueType& xt, const std::vector<int64_t>& lens) {
  SliceRegion r;
  r.rank = xt.shape.size();
  if (r.rank > kMaxSliceRank) ctx.fail("slices of rank above 8 are not supported");
  for (const char* p : {"begin", "end"}) {
    const ValueType& t = ctx.type(p);
    if (!is_index_dtype(t.dtype) || t.shape.size() != 1 || t.shape[0] != static_cast<int64_t>(r.rank)) {
      ctx.fail(std::string("'") + p + "' must hold one integer per input axis (" + std::to_string(r.rank) + ")");
    }
  }
  std::vector<int64_t> stride = int_list_or(ctx, "stride", r.rank, 1);
  std::vector<bool> bm = mask_or(ctx, "begin_mask", r.rank), em = mask_or(ctx, "end_mask", r.rank),
                    sm = mask_or(ctx, "squeeze_mask", r.rank);
  for (size_t d = 0; d < r.rank; ++d) {
    if (stride[d] == 0) ctx.fail("slice stride 0 at axis " + std::to_string(d));
    r.dim[d] = xt.shape[d];
    r.stride[d] = stride[d];
    r.bmask[d] = bm[d];
    r.emask[d] = em[d];
    r.smask[d] = sm[d];
    r.want_len[d] = d < lens.size() ? lens[d] : 0;
  }
  r.where = "op '" + ctx.op_name() + "' (" + ctx.op_type() + ")";
  return r;
}

// The region's lengths with begin / end constant, as the output would have them (squeezed axes 1).
std::vector<int64_t> constant_lengths(const OpPlanContext& ctx, const SliceRegion& r) {
  std::vector<int64_t> begin = ctx.const_ints("begin"), end = ctx.const_ints("end"), lens;
  for (size_t d = 0; d < r.rank; ++d) {
    AxisSlice a = slice_axis(r.dim[d], begin[d], end[d], r.stride[d], r.bmask[d], r.emask[d], r.smask[d]);
    if (r.smask[d] && a.len != 1) ctx.fail("squeezed slice axis " + std::to_string(d) + " is empty");
    lens.push_back(a.len);
  }
  return lens;
}

// Region lengths from a shape without the squeezed axes (the output of a
// slice, or slice_update's update).
std::vector<int64_t> unsqueezed(const OpPlanContext& ctx, const SliceRegion& r, const Shape& shape) {
  std::vector<int64_t> lens;
  size_t k = 0;
  for (size_t d = 0; d < r.rank; ++d) lens.push_back(r.smask[d] ? 1 : (k < shape.size() ? shape[k++] : -1));
  if (k != shape.size())
    ctx.fail("shape " + shape_to_string(shape) + " does not match the slice of rank " + std::to_string(r.rank));
  return lens;
}

PlannedOp build_slice_by_index(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  SliceRegion r = plan_region(ctx, xt, {});
  if (ctx.constant("begin") != nullptr && ctx.constant("end") != nullptr) {
    std::vector<int64_t> begin = ctx.const_ints("begin"), end = ctx.const_ints("end");
    std::vector<int64_t> strides = contiguous_strides(xt.shape);
    StridedCopy copy;
    Shape out;
    for (size_t d = 0; d < r.rank; ++d) {
      AxisSlice a = slice_axis(r.dim[d], begin[d], end[d], r.stride[d], r.bmask[d], r.emask[d], r.smask[d]);
      if (r.smask[d] && a.len != 1) ctx.fail("squeezed slice axis " + std::to_string(d) + " is empty");
      copy.src_offset += a.begin * strides[d];
      copy.out_shape.push_back(a.len);
      copy.src_strides.push_back(a.step * strides[d]);
      if (!r.smask[d]) out.push_back(a.len);
    }
    PlannedOp op = strided_op(ctx, xt, copy);
    op.outputs[0].shape = out;
    return op;
  }
  // begin or end known only at run time: the program's declared shape is the slice's
  if (ctx.declared_outputs().size() != 1) ctx.fail("a slice with run-time begin or end needs its declared output type");
  const ValueType declared{ctx.declared_outputs()[0].dtype, ctx.declared_shape(0)};
  std::vector<int64_t> lens = unsqueezed(ctx, r, declared.shape);
  for (size_t d = 0; d < r.rank; ++d) r.want_len[d] = lens[d];
  int xs = ctx.input("x"), bs = ctx.input("begin"), es = ctx.input("end");
  const std::vector<int64_t> xstr = contiguous_strides(xt.shape),
                             ostr = contiguous_strides(Shape(lens.begin(), lens.end()));
  PlannedOp op;
  op.outputs.push_back({xt.dtype, declared.shape});
  op.run = [=](const KernelCall& call) {
    int64_t start[kMaxSliceRank], step[kMaxSliceRank], sstr[kMaxSliceRank];
    r.resolve(call.in(bs), call.in(es), start, step);
    int64_t off = 0;
    for (size_t d = 0; d < r.rank; ++d) {
      off += start[d] * xstr[d];
      sstr[d] = step[d] * xstr[d];
    }
    copy_region(r.rank, lens.data(), static_cast<const uint8_t*>(call.in(xs).data()), off, sstr,
                static_cast<uint8_t*>(call.out(0).data()), 0, ostr.data(), dtype_size(xt.dtype));
  };
  return op;
}

// x with the region begin / end / stride select replaced by `update` (iOS18).
PlannedOp build_slice_update(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const ValueType& ut = ctx.type("update");
  if (ut.dtype != xt.dtype) ctx.fail("update must have the dtype of x");
  SliceRegion r = plan_region(ctx, xt, {});
  std::vector<int64_t> lens = unsqueezed(ctx, r, ut.shape);
  if (ctx.constant("begin") != nullptr && ctx.constant("end") != nullptr && constant_lengths(ctx, r) != lens) {
    ctx.fail("update " + shape_to_string(ut.shape) + " does not match the slice of x " + shape_to_string(xt.shape));
  }
  for (size_t d = 0; d < r.rank; ++d) r.want_len[d] = lens[d];
  int xs = ctx.input("x"), us = ctx.input("update"), bs = ctx.input("begin"), es = ctx.input("end");
  const std::vector<int64_t> xstr = contiguous_strides(xt.shape),
                             ustr = contiguous_strides(Shape(lens.begin(), lens.end()));
  PlannedOp op;
  op.outputs.push_back(xt);
  op.run = [=](const KernelCall& call) {
    int64_t start[kMaxSliceRank], step[kMaxSliceRank], dstr[kMaxSliceRank];
    r.resolve(call.in(bs), call.in(es), start, step);  // before anything is written
    const Tensor& x = call.in(xs);
    Tensor& out = call.out(0);
    if (out.data() != x.data()) std::memcpy(out.data(), x.data(), x.nbytes());
    int64_t off = 0;
    for (size_t d = 0; d < r.rank; ++d) {
      off += start[d] * xstr[d];
      dstr[d] = step[d] * xstr[d];
    }
    copy_region(r.rank, lens.data(), static_cast<const uint8_t*>(call.in(us).data()), 0, ustr.data(),
                static_cast<uint8_t*>(out.data()), off, dstr, dtype_size(xt.dtype));
  };
  return op;
}

PlannedOp build_slice_by_size(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const size_t rank = xt.shape.size();
  std::vector<int64_t> size = ctx.const_ints("size");
  if (size.size() != rank || ctx.type("begin").shape != Shape{static_cast<int64_t>(rank)}) {
    ctx.fail("begin and size need one entry per input axis");
  }
  if (rank > kMaxSliceRank) ctx.fail("slices of rank above 8 are not supported");
  // the lengths: size, or to the end of the axis (-1), which needs a constant begin
  const Tensor* begin_const = ctx.constant("begin");
  std::vector<int64_t> begin = begin_const != nullptr ? ctx.const_ints("begin") : std::vector<int64_t>(rank, 0);
  std::vector<int64_t> lens(rank);
  for (size_t d = 0; d < rank; ++d) {
    int64_t b = begin[d] < 0 ? begin[d] + xt.shape[d] : begin[d];
    bool inside = b >= 0 && b <= xt.shape[d];  // checked first: shape - b (and b + len) may overflow otherwise
    if (size[d] == -1 && begin_const == nullptr) ctx.fail_run_time("size -1 needs a constant begin");
    lens[d] = inside && size[d] == -1 ? xt.shape[d] - b : size[d];
    if (begin_const != nullptr && (!inside || lens[d] < 0 || lens[d] > xt.shape[d] - b)) {
      ctx.fail("slice [" + std::to_string(begin[d]) + ", +" + std::to_string(size[d]) + ") out of range for axis " +
               std::to_string(d) + " of size " + std::to_string(xt.shape[d]));
    }
    if (lens[d] < 0 || lens[d] > xt.shape[d])
      ctx.fail("size " + std::to_string(size[d]) + " out of range for axis " + std::to_string(d));
  }
  std::vector<int64_t> strides = contiguous_strides(xt.shape);
  if (begin_const != nullptr) {
    StridedCopy copy;
    for (size_t d = 0; d < rank; ++d) {
      copy.src_offset += (begin[d] < 0 ? begin[d] + xt.shape[d] : begin[d]) * strides[d];
      copy.out_shape.push_back(lens[d]);
      copy.src_strides.push_back(strides[d]);
    }
    return strided_op(ctx, xt, copy);
  }
  const Shape out(lens.begin(), lens.end());
  const std::vector<int64_t> ostr = contiguous_strides(out);
  const std::string where = "op '" + ctx.op_name() + "' (slice_by_size)";
  int xs = ctx.input("x"), bs = ctx.input("begin");
  PlannedOp op;
  op.outputs.push_back({xt.dtype, out});
  op.run = [=](const KernelCall& call) {
    int64_t off = 0;
    for (size_t d = 0; d < rank; ++d) {
      int64_t v = read_index(call.in(bs), static_cast<int64_t>(d)), b = v < 0 ? v + xt.shape[d] : v;
      if (b < 0 || b > xt.shape[d] - lens[d]) {
        throw InputError(where + ": begin " + std::to_string(v) + " with size " + std::to_string(lens[d]) +
                         " is out of range for axis " + std::to_string(d) + " of size " + std::to_string(xt.shape[d]));
      }
      off += b * strides[d];
    }
    copy_region(rank, lens.data(), static_cast<const uint8_t*>(call.in(xs).data()), off, strides.data(),
                static_cast<uint8_t*>(call.out(0).data()), 0, ostr.data(), dtype_size(xt.dtype));
  };
  return op;
}

// interleave=True: values of one shape alternate along the axis,
// out[.., k * n + i, ..] = values[i][.., k, ..].
PlannedOp plan_interleave(OpPlanContext& ctx, size_t n) {
  const ValueType& first = ctx.type("values", 0);
  const int64_t rank = static_cast<int64_t>(first.shape.size());
  const int64_t axis = normalize_axis(ctx, ctx.const_int("axis"), rank);
  std::vector<int> slots;
  for (size_t i = 0; i < n; ++i) {
    const ValueType& t = ctx.type("values", i);
    if (t.dtype != first.dtype || t.shape != first.shape) ctx.fail("interleaved values must have one dtype and shape");
    slots.push_back(ctx.input("values", i));
  }
  const int64_t outer = shape_numel(Shape(first.shape.begin(), first.shape.begin() + axis)), k = first.shape[axis];
  const int64_t chunk = shape_numel(Shape(first.shape.begin() + axis + 1, first.shape.end())) *
                        static_cast<int64_t>(dtype_size(first.dtype));
  Shape out = first.shape;
  out[axis] *= static_cast<int64_t>(n);
  PlannedOp op;
  op.outputs.push_back({first.dtype, out});
  op.run = [=](const KernelCall& call) {
    auto* dst = static_cast<uint8_t*>(call.out(0).data());
    const int64_t m = static_cast<int64_t>(slots.size());
    for (int64_t i = 0; i < m; ++i) {
      const auto* src = static_cast<const uint8_t*>(call.in(slots[i]).data());
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < k; ++j)
          std::memcpy(dst + ((o * k + j) * m + i) * chunk, src + (o * k + j) * chunk, static_cast<size_t>(chunk));
    }
  };
  return op;
}

// Concatenation as [outer, axis-part, inner] blocks copied side by side.
PlannedOp build_concat(OpPlanContext& ctx) {
  size_t n = ctx.arity("values");
  if (n == 0) ctx.fail("concat needs at least one value");
  if (ctx.const_bool_or("interleave", false)) return plan_interleave(ctx, n);
  // A rank-0 value is one element along the axis: coremltools concatenates
  // scalars into a shape vector this way (Core ML runs it; a rank-0 `out`
  // had no axis to index).
  auto type_of = [&](size_t i) {
    ValueType t = ctx.type("values", i);
    if (t.shape.empty()) t.shape = {1};
    return t;
  };
  const ValueType first = type_of(0);
  int64_t rank = static_cast<int64_t>(first.shape.size());
  int64_t axis = normalize_axis(ctx, ctx.const_int("axis"), rank);
  Shape out = first.shape;
  out[axis] = 0;
  std::vector<int64_t> part_bytes;
  std::vector<int> slots;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= first.shape[d];
  for (int64_t d = axis + 1; d < rank; ++d) inner *= first.shape[d];
  size_t elem = dtype_size(first.dtype);
  for (size_t i = 0; i < n; ++i) {
    const ValueType t = type_of(i);
    if (t.dtype != first.dtype || static_cast<int64_t>(t.shape.size()) != rank)
      ctx.fail("concat values differ in dtype or rank");
    for (int64_t d = 0; d < rank; ++d) {
      if (d != axis && t.shape[d] != first.shape[d]) ctx.fail("concat values differ in shape off the concat axis");
    }
    out[axis] += t.shape[axis];
    part_bytes.push_back(t.shape[axis] * inner * static_cast<int64_t>(elem));
    slots.push_back(ctx.input("values", i));
  }
  int64_t row_bytes = out[axis] * inner * static_cast<int64_t>(elem);
  PlannedOp op;
  op.outputs.push_back({first.dtype, out});
  op.run = [=](const KernelCall& call) {
    auto* dst = static_cast<uint8_t*>(call.out(0).data());
    int64_t col = 0;
    for (size_t i = 0; i < slots.size(); ++i) {
      const auto* src = static_cast<const uint8_t*>(call.in(slots[i]).data());
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(dst + o * row_bytes + col, src + o * part_bytes[i], part_bytes[i]);
      col += part_bytes[i];
    }
  };
  return op;
}

PlannedOp build_stack(OpPlanContext& ctx) {
  size_t n = ctx.arity("values");
  if (n == 0) ctx.fail("stack needs at least one value");
  const ValueType& first = ctx.type("values", 0);
  int64_t rank = static_cast<int64_t>(first.shape.size());
  int64_t axis = normalize_axis(ctx, ctx.const_int("axis"), rank + 1);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= first.shape[d];
  for (int64_t d = axis; d < rank; ++d) inner *= first.shape[d];
  std::vector<int> slots;
  for (size_t i = 0; i < n; ++i) {
    if (ctx.type("values", i).shape != first.shape || ctx.type("values", i).dtype != first.dtype)
      ctx.fail("stack values differ");
    slots.push_back(ctx.input("values", i));
  }
  Shape out = first.shape;
  out.insert(out.begin() + axis, static_cast<int64_t>(n));
  int64_t part = inner * static_cast<int64_t>(dtype_size(first.dtype));
  PlannedOp op;
  op.outputs.push_back({first.dtype, out});
  op.run = [=](const KernelCall& call) {
    auto* dst = static_cast<uint8_t*>(call.out(0).data());
    int64_t k = static_cast<int64_t>(slots.size());
    for (int64_t i = 0; i < k; ++i) {
      const auto* src = static_cast<const uint8_t*>(call.in(slots[i]).data());
      for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + (o * k + i) * part, src + o * part, part);
    }
  };
  return op;
}

PlannedOp build_split(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  int64_t rank = static_cast<int64_t>(xt.shape.size());
  int64_t axis = normalize_axis(ctx, ctx.const_int("axis"), rank);
  int64_t dim = xt.shape[axis];
  std::vector<int64_t> sizes;
  if (ctx.has("split_sizes")) {
    sizes = ctx.const_ints("split_sizes");
  } else {
    int64_t k = ctx.const_int("num_splits");
    if (k <= 0 || dim % k != 0) ctx.fail("num_splits must divide the axis size " + std::to_string(dim));
    sizes.assign(k, dim / k);
  }
  int64_t total = 0;
  for (int64_t s : sizes) {
    if (s < 0 || s > dim)
      ctx.fail("split size " + std::to_string(s) + " out of range for axis size " + std::to_string(dim));
    total += s;
  }
  if (total != dim)
    ctx.fail("split sizes add up to " + std::to_string(total) + ", axis size is " + std::to_string(dim));
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= xt.shape[d];
  for (int64_t d = axis + 1; d < rank; ++d) inner *= xt.shape[d];
  size_t elem = dtype_size(xt.dtype);
  PlannedOp op;
  for (int64_t s : sizes) {
    Shape o = xt.shape;
    o[axis] = s;
    op.outputs.push_back({xt.dtype, o});
  }
  int xs = ctx.input("x");
  int64_t row = dim * inner * static_cast<int64_t>(elem);
  op.run = [=](const KernelCall& call) {
    const auto* src = static_cast<const uint8_t*>(call.in(xs).data());
    int64_t col = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      int64_t part = sizes[i] * inner * static_cast<int64_t>(elem);
      auto* dst = static_cast<uint8_t*>(call.out(static_cast<int>(i)).data());
      for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * part, src + o * row + col, part);
      col += part;
    }
  };
  return op;
}

}  // namespace

void register_slicing_ops(OpRegistry& r) {
  r.add("slice_by_index", build_slice_by_index);
  r.add("slice_by_size", build_slice_by_size);
  r.add("slice_update", build_slice_update);
  r.add("concat", build_concat);
  r.add("stack", build_stack);
  r.add("split", build_split);
}

}  // namespace staticllm::mil

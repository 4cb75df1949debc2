// Ops that change how elements are arranged: reshape, reshape_like,
// flatten2d, squeeze, expand_dims, identity (byte copies), transpose and tile
// (strided copies), shape.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "mil/ops/elementwise_util.h"
#include "mil/ops/strided_copy.h"

namespace staticllm::mil {

namespace {

// An integer scalar constant; values past +-2^53 come back as 2^53 (out of any range).
int64_t read_scalar_int(const Tensor& t) {
  const double v = load_one(t.dtype(), t.data(), 0);
  constexpr double kLimit = 9007199254740992.0;
  return std::fabs(v) < kLimit ? static_cast<int64_t>(v) : static_cast<int64_t>(kLimit);
}

PlannedOp copy_as(OpPlanContext& ctx, const ValueType& xt, const Shape& out_shape) {
  if (shape_numel(out_shape) != shape_numel(xt.shape)) {
    ctx.fail("cannot view " + shape_to_string(xt.shape) + " as " + shape_to_string(out_shape));
  }
  PlannedOp op;
  op.outputs.push_back({xt.dtype, out_shape});
  op.byte_copy = true;
  int xs = ctx.input("x");
  op.run = [xs](const KernelCall& call) {
    const Tensor& x = call.in(xs);
    if (call.out(0).data() != x.data()) std::memcpy(call.out(0).data(), x.data(), x.nbytes());
  };
  return op;
}

// What a 0 at position i of a reshape's shape (of length k) stands for: the
// input dim at the same position (iOS15/16, ranks equal), or counted from the
// right (iOS17: shape[i] matches x[j] when k - i == rank - j), 1 past the input's rank.
int64_t zero_dim(const OpPlanContext& ctx, const Shape& x, size_t k, size_t i) {
  if (ctx.ios_opset() >= 17) {
    int64_t j = static_cast<int64_t>(x.size()) - static_cast<int64_t>(k - i);
    return j >= 0 ? x[j] : 1;
  }
  if (i >= x.size()) ctx.fail("reshape shape 0 at axis beyond the input rank");
  return x[i];
}

PlannedOp build_reshape(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  std::vector<int64_t> shape = ctx.const_ints("shape");
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) ctx.fail("reshape shape has more than one -1");
      infer = static_cast<int64_t>(i);
    } else if (shape[i] == 0) {
      shape[i] = zero_dim(ctx, xt.shape, shape.size(), i);
    } else if (shape[i] < 0) {
      ctx.fail("negative reshape dimension " + std::to_string(shape[i]));
    }
    // a product past int64 cannot match the input's element count (and is
    // undefined behaviour to compute)
    if (shape[i] >= 0 && __builtin_mul_overflow(known, shape[i], &known)) {
      ctx.fail("reshape shape " + shape_to_string(shape) + " has too many elements");
    }
  }
  if (infer >= 0) {
    if (known == 0 || shape_numel(xt.shape) % known != 0) ctx.fail("cannot infer the -1 reshape dimension");
    shape[infer] = shape_numel(xt.shape) / known;
  }
  return copy_as(ctx, xt, shape);
}

PlannedOp build_squeeze(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  int64_t rank = static_cast<int64_t>(xt.shape.size());
  std::vector<bool> drop(rank, false);
  if (ctx.has("axes")) {
    for (int64_t a : ctx.const_ints("axes")) {
      int64_t d = normalize_axis(ctx, a, rank);
      if (xt.shape[d] != 1)
        ctx.fail("cannot squeeze axis " + std::to_string(a) + " of size " + std::to_string(xt.shape[d]));
      drop[d] = true;
    }
  } else {
    for (int64_t d = 0; d < rank; ++d) drop[d] = xt.shape[d] == 1;
  }
  Shape out;
  for (int64_t d = 0; d < rank; ++d)
    if (!drop[d]) out.push_back(xt.shape[d]);
  return copy_as(ctx, xt, out);
}

PlannedOp build_expand_dims(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  std::vector<int64_t> axes = ctx.const_ints("axes");
  int64_t out_rank = static_cast<int64_t>(xt.shape.size() + axes.size());
  std::vector<bool> inserted(out_rank, false);
  for (int64_t a : axes) {
    int64_t d = normalize_axis(ctx, a, out_rank);
    if (inserted[d]) ctx.fail("expand_dims axis repeated");
    inserted[d] = true;
  }
  Shape out;
  size_t next = 0;
  for (int64_t d = 0; d < out_rank; ++d) out.push_back(inserted[d] ? 1 : xt.shape[next++]);
  return copy_as(ctx, xt, out);
}

// [prod(x[:axis]), prod(x[axis:])]
PlannedOp build_flatten2d(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const int64_t rank = static_cast<int64_t>(xt.shape.size());
  int64_t axis = ctx.const_int_or("axis", 1);
  if (axis < -rank || axis > rank)
    ctx.fail("axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  if (axis < 0) axis += rank;
  return copy_as(ctx, xt,
                 {shape_numel(Shape(xt.shape.begin(), xt.shape.begin() + axis)),
                  shape_numel(Shape(xt.shape.begin() + axis, xt.shape.end()))});
}

// The shape is pieces of the reference tensors' shapes: ref_tensors[i].shape[begins[i]:ends[i]]
// (to the end where end_masks[i]), concatenated.
PlannedOp build_reshape_like(OpPlanContext& ctx) {
  const size_t n = ctx.arity("ref_tensors");
  if (n == 0 || ctx.arity("begins") != n || ctx.arity("ends") != n || ctx.arity("end_masks") != n) {
    ctx.fail("ref_tensors, begins, ends and end_masks need the same number of entries");
  }
  Shape out;
  for (size_t i = 0; i < n; ++i) {
    const Shape& ref = ctx.type("ref_tensors", i).shape;
    const Tensor* b = ctx.constant("begins", i);
    const Tensor* e = ctx.constant("ends", i);
    const Tensor* m = ctx.constant("end_masks", i);
    if (b == nullptr || e == nullptr || m == nullptr || b->numel() != 1 || e->numel() != 1 || m->numel() != 1 ||
        m->dtype() != DType::kBool) {
      ctx.fail("begins, ends and end_masks must be constant scalars");
    }
    const int64_t rank = static_cast<int64_t>(ref.size());
    int64_t begin = read_scalar_int(*b), end = m->data_as<uint8_t>()[0] != 0 ? rank : read_scalar_int(*e);
    if (begin < 0) begin += rank;
    if (end < 0) end += rank;
    if (begin < 0 || end > rank || begin > end) {
      ctx.fail("begin and end " + std::to_string(begin) + ", " + std::to_string(end) + " out of range for rank " +
               std::to_string(rank));
    }
    out.insert(out.end(), ref.begin() + begin, ref.begin() + end);
  }
  return copy_as(ctx, ctx.type("x"), out);
}

PlannedOp build_identity(OpPlanContext& ctx) { return copy_as(ctx, ctx.type("x"), ctx.type("x").shape); }

PlannedOp build_transpose(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  int64_t rank = static_cast<int64_t>(xt.shape.size());
  std::vector<int64_t> perm = ctx.const_ints("perm");
  if (static_cast<int64_t>(perm.size()) != rank) ctx.fail("perm length must equal the input rank");
  std::vector<int64_t> strides = contiguous_strides(xt.shape);
  std::vector<bool> seen(rank, false);
  StridedCopy copy;
  for (int64_t p : perm) {
    int64_t d = normalize_axis(ctx, p, rank);
    if (seen[d]) ctx.fail("perm repeats an axis");
    seen[d] = true;
    copy.out_shape.push_back(xt.shape[d]);
    copy.src_strides.push_back(strides[d]);
  }
  return strided_op(ctx, xt, copy);
}

PlannedOp build_tile(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  std::vector<int64_t> reps = ctx.const_ints("reps");
  if (reps.size() != xt.shape.size()) ctx.fail("reps length must equal the input rank");
  // Tiling = reading x with index (i mod dim): expressed as a rank-2x view
  // [rep0, dim0, rep1, dim1, ...] with stride 0 over each rep axis.
  std::vector<int64_t> strides = contiguous_strides(xt.shape);
  StridedCopy copy;
  Shape out;
  for (size_t d = 0; d < reps.size(); ++d) {
    if (reps[d] < 1) ctx.fail("tile reps must be positive");
    int64_t size;
    if (__builtin_mul_overflow(reps[d], xt.shape[d], &size)) ctx.fail("tile reps make the output too large");
    copy.out_shape.push_back(reps[d]);
    copy.src_strides.push_back(0);
    copy.out_shape.push_back(xt.shape[d]);
    copy.src_strides.push_back(strides[d]);
    out.push_back(size);
  }
  // Drop size-1 axes so the copy stays within the rank limit.
  StridedCopy compact;
  for (size_t i = 0; i < copy.out_shape.size(); ++i) {
    if (copy.out_shape[i] == 1) continue;
    compact.out_shape.push_back(copy.out_shape[i]);
    compact.src_strides.push_back(copy.src_strides[i]);
  }
  PlannedOp op = strided_op(ctx, xt, compact);
  op.outputs[0].shape = out;
  return op;
}

PlannedOp build_shape(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  Shape dims = xt.shape;
  PlannedOp op;
  op.outputs.push_back({DType::kInt32, {static_cast<int64_t>(dims.size())}});
  op.run = [dims](const KernelCall& call) {
    int32_t* o = call.out(0).data_as<int32_t>();
    for (size_t i = 0; i < dims.size(); ++i) o[i] = static_cast<int32_t>(dims[i]);
  };
  return op;
}

}  // namespace

void register_shape_ops(OpRegistry& r) {
  r.add("reshape", build_reshape);
  r.add("squeeze", build_squeeze);
  r.add("expand_dims", build_expand_dims);
  r.add("identity", build_identity);
  r.add("flatten2d", build_flatten2d);
  r.add("reshape_like", build_reshape_like);
  r.add("transpose", build_transpose);
  r.add("tile", build_tile);
  r.add("shape", build_shape);
}

}  // namespace staticllm::mil

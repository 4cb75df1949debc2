// Ops that cut, join or index tensors: slice_by_index, slice_by_size, split,
// concat, stack, gather (with batch_dims), gather_along_axis, gather_nd.
#include <algorithm>
#include <cstring>

#include "mil/kernels/compressed.h"
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

PlannedOp build_slice_by_index(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  size_t rank = xt.shape.size();
  std::vector<int64_t> begin = ctx.const_ints("begin");
  std::vector<int64_t> end = ctx.const_ints("end");
  std::vector<int64_t> stride = ctx.has("stride") ? ctx.const_ints("stride") : std::vector<int64_t>(rank, 1);
  if (begin.size() != rank || end.size() != rank || stride.size() != rank) {
    ctx.fail("begin, end and stride must have one entry per input axis (" + std::to_string(rank) + ")");
  }
  std::vector<bool> bmask = mask_or(ctx, "begin_mask", rank), emask = mask_or(ctx, "end_mask", rank),
                    smask = mask_or(ctx, "squeeze_mask", rank);
  std::vector<int64_t> strides = contiguous_strides(xt.shape);
  StridedCopy copy;
  Shape out;
  for (size_t d = 0; d < rank; ++d) {
    int64_t n = xt.shape[d], s = stride[d];
    if (s == 0) ctx.fail("slice stride 0 at axis " + std::to_string(d));
    // A step longer than the axis takes at most one element either way;
    // clamped, the length and offset arithmetic below cannot overflow.
    s = std::clamp<int64_t>(s, -(n + 1), n + 1);
    // numpy slice semantics: negative indices count from the end, clamped.
    auto clamp = [&](int64_t v, bool is_end) {
      if (v < 0) v += n;
      int64_t lo = s > 0 ? 0 : -1, hi = s > 0 ? n : n - 1;
      (void)is_end;
      return std::min(std::max(v, lo), hi);
    };
    int64_t b = bmask[d] ? (s > 0 ? 0 : n - 1) : clamp(begin[d], false);
    int64_t e = emask[d] ? (s > 0 ? n : -1) : clamp(end[d], true);
    if (smask[d]) e = b + (s > 0 ? 1 : -1);
    int64_t len = s > 0 ? std::max<int64_t>(0, (e - b + s - 1) / s) : std::max<int64_t>(0, (b - e - s - 1) / (-s));
    if (smask[d] && len != 1) ctx.fail("squeezed slice axis " + std::to_string(d) + " is empty");
    copy.src_offset += b * strides[d];
    copy.out_shape.push_back(len);
    copy.src_strides.push_back(s * strides[d]);
    if (!smask[d]) out.push_back(len);
  }
  PlannedOp op = strided_op(ctx, xt, copy);
  op.outputs[0].shape = out;
  return op;
}

PlannedOp build_slice_by_size(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  size_t rank = xt.shape.size();
  std::vector<int64_t> begin = ctx.const_ints("begin"), size = ctx.const_ints("size");
  if (begin.size() != rank || size.size() != rank) ctx.fail("begin and size need one entry per input axis");
  std::vector<int64_t> strides = contiguous_strides(xt.shape);
  StridedCopy copy;
  for (size_t d = 0; d < rank; ++d) {
    int64_t b = begin[d] < 0 ? begin[d] + xt.shape[d] : begin[d];
    bool inside = b >= 0 && b <= xt.shape[d];  // checked first: shape - b (and b + len) may overflow otherwise
    int64_t len = inside && size[d] == -1 ? xt.shape[d] - b : size[d];
    if (!inside || len < 0 || len > xt.shape[d] - b) {
      ctx.fail("slice [" + std::to_string(begin[d]) + ", +" + std::to_string(size[d]) + ") out of range for axis " +
               std::to_string(d) + " of size " + std::to_string(xt.shape[d]));
    }
    copy.src_offset += b * strides[d];
    copy.out_shape.push_back(len);
    copy.src_strides.push_back(strides[d]);
  }
  return strided_op(ctx, xt, copy);
}

// Concatenation as [outer, axis-part, inner] blocks copied side by side.
PlannedOp build_concat(OpPlanContext& ctx) {
  size_t n = ctx.arity("values");
  if (n == 0) ctx.fail("concat needs at least one value");
  if (ctx.has("interleave") && ctx.const_bool("interleave")) ctx.fail("interleave=True is not supported");
  const ValueType& first = ctx.type("values", 0);
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
    const ValueType& t = ctx.type("values", i);
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

// x [B.., P.., D, Q..] and indices [B.., I..] (B: the batch_dims leading
// dims, equal in both): out [B.., P.., I.., Q..] with
// out[b, p, i, q] = x[b, p, indices[b, i], q].
PlannedOp build_gather(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const ValueType& it = ctx.type("indices");
  if (!is_index_dtype(it.dtype)) ctx.fail("indices must be integers");
  const int64_t rank = static_cast<int64_t>(xt.shape.size());
  const int64_t axis = normalize_axis(ctx, ctx.const_int_or("axis", 0), rank);
  const int64_t nb = ctx.const_int_or("batch_dims", 0);
  if (nb < 0 || nb > axis || nb > static_cast<int64_t>(it.shape.size())) {
    ctx.fail("batch_dims " + std::to_string(nb) + " must be in [0, axis] and at most the rank of indices");
  }
  for (int64_t d = 0; d < nb; ++d) {
    if (it.shape[d] != xt.shape[d]) ctx.fail("the batch dims of x and indices differ");
  }
  const int64_t batches = shape_numel(Shape(xt.shape.begin(), xt.shape.begin() + nb));
  const int64_t outer = shape_numel(Shape(xt.shape.begin() + nb, xt.shape.begin() + axis));
  const int64_t inner = shape_numel(Shape(xt.shape.begin() + axis + 1, xt.shape.end())), dim = xt.shape[axis];
  Shape out(xt.shape.begin(), xt.shape.begin() + axis);
  out.insert(out.end(), it.shape.begin() + nb, it.shape.end());
  out.insert(out.end(), xt.shape.begin() + axis + 1, xt.shape.end());
  const int64_t count = shape_numel(Shape(it.shape.begin() + nb, it.shape.end()));  // per batch
  const int64_t chunk = inner * static_cast<int64_t>(dtype_size(xt.dtype));
  const IndexRule rule = index_rule(ctx);
  PlannedOp op;
  op.outputs.push_back({xt.dtype, out});
  if (auto cw = ctx.compressed("x"); cw && axis == 0) {  // embeddings: expand only the rows asked for
    int is = ctx.input("indices");
    op.scratch_bytes = static_cast<size_t>(inner) * sizeof(float);
    op.run = [=](const KernelCall& call) {
      const Tensor& idx = call.in(is);
      for (int64_t j = 0; j < count; ++j) rule(read_index(idx, j), dim);
      auto* row = static_cast<float*>(call.scratch);
      for (int64_t j = 0; j < count; ++j) {
        int64_t v = rule(read_index(idx, j), dim);
        decode_compressed_rows(*cw, v, v + 1, row);
        store_run<float>(xt.dtype, call.out(0).data(), j * inner, inner, row);
      }
    };
    return op;
  }
  int xs = ctx.input("x"), is = ctx.input("indices");
  op.run = [=](const KernelCall& call) {
    const Tensor& idx = call.in(is);
    for (int64_t j = 0; j < batches * count; ++j) rule(read_index(idx, j), dim);
    const auto* src = static_cast<const uint8_t*>(call.in(xs).data());
    auto* dst = static_cast<uint8_t*>(call.out(0).data());
    for (int64_t b = 0; b < batches; ++b) {
      for (int64_t o = 0; o < outer; ++o) {
        const int64_t row = b * outer + o;
        for (int64_t j = 0; j < count; ++j) {
          int64_t v = rule(read_index(idx, b * count + j), dim);
          std::memcpy(dst + (row * count + j) * chunk, src + (row * dim + v) * chunk, chunk);
        }
      }
    }
  };
  return op;
}

PlannedOp build_gather_along_axis(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const ValueType& it = ctx.type("indices");
  if (!is_index_dtype(it.dtype)) ctx.fail("indices must be integers");
  int64_t rank = static_cast<int64_t>(xt.shape.size());
  if (static_cast<int64_t>(it.shape.size()) != rank) ctx.fail("indices must have the rank of x");
  int64_t axis = normalize_axis(ctx, ctx.const_int_or("axis", 0), rank);
  for (int64_t d = 0; d < rank; ++d) {
    if (d != axis && it.shape[d] != xt.shape[d]) ctx.fail("indices shape must match x off the gather axis");
  }
  int64_t outer = 1, inner = 1, dim = xt.shape[axis], n = it.shape[axis];
  for (int64_t d = 0; d < axis; ++d) outer *= xt.shape[d];
  for (int64_t d = axis + 1; d < rank; ++d) inner *= xt.shape[d];
  size_t elem = dtype_size(xt.dtype);
  const IndexRule rule = index_rule(ctx);
  int xs = ctx.input("x"), is = ctx.input("indices");
  PlannedOp op;
  op.outputs.push_back({xt.dtype, it.shape});
  op.run = [=](const KernelCall& call) {
    const Tensor& idx = call.in(is);
    const auto* src = static_cast<const uint8_t*>(call.in(xs).data());
    auto* dst = static_cast<uint8_t*>(call.out(0).data());
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t i = 0; i < inner; ++i) {
          int64_t pos = (o * n + j) * inner + i;
          int64_t v = rule(read_index(idx, pos), dim);
          std::memcpy(dst + pos * elem, src + ((o * dim + v) * inner + i) * elem, elem);
        }
      }
    }
  };
  return op;
}

// x [B.., X..] and indices [B.., M.., K] (B: batch_dims): out [B.., M.., X[K:]..]
// where out[b, m] = x[b, indices[b, m, 0], ..., indices[b, m, K-1]].
PlannedOp build_gather_nd(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const ValueType& it = ctx.type("indices");
  if (!is_index_dtype(it.dtype)) ctx.fail("indices must be integers");
  const int64_t nb = ctx.const_int_or("batch_dims", 0);
  const int64_t irank = static_cast<int64_t>(it.shape.size()), xrank = static_cast<int64_t>(xt.shape.size());
  if (irank < 1) ctx.fail("indices must have rank >= 1");
  const int64_t K = it.shape.back();
  if (nb < 0 || nb >= irank || nb + K > xrank) {
    ctx.fail("indices " + shape_to_string(it.shape) + " with batch_dims " + std::to_string(nb) + " do not index x " +
             shape_to_string(xt.shape));
  }
  for (int64_t d = 0; d < nb; ++d) {
    if (it.shape[d] != xt.shape[d]) ctx.fail("the batch dims of x and indices differ");
  }
  const int64_t batches = shape_numel(Shape(xt.shape.begin(), xt.shape.begin() + nb));
  const int64_t per_batch = shape_numel(Shape(it.shape.begin() + nb, it.shape.end() - 1));
  Shape indexed(xt.shape.begin() + nb, xt.shape.begin() + nb + K);
  const int64_t chunk_elems = shape_numel(Shape(xt.shape.begin() + nb + K, xt.shape.end()));
  const int64_t batch_elems = shape_numel(indexed) * chunk_elems;
  std::vector<int64_t> strides = contiguous_strides(indexed);
  Shape out(it.shape.begin(), it.shape.end() - 1);
  out.insert(out.end(), xt.shape.begin() + nb + K, xt.shape.end());
  const size_t elem = dtype_size(xt.dtype);
  const IndexRule rule = index_rule(ctx);
  int xs = ctx.input("x"), is = ctx.input("indices");
  PlannedOp op;
  op.outputs.push_back({xt.dtype, out});
  op.run = [=](const KernelCall& call) {
    const Tensor& idx = call.in(is);
    const auto* src = static_cast<const uint8_t*>(call.in(xs).data());
    auto* dst = static_cast<uint8_t*>(call.out(0).data());
    auto offset_of = [&](int64_t row) {  // element offset inside a batch of the row-th index tuple
      int64_t off = 0;
      for (int64_t k = 0; k < K; ++k) off += rule(read_index(idx, row * K + k), indexed[k]) * strides[k];
      return off * chunk_elems;
    };
    for (int64_t r = 0; r < batches * per_batch; ++r) offset_of(r);  // every index checked first
    for (int64_t r = 0; r < batches * per_batch; ++r) {
      const int64_t from = (r / std::max<int64_t>(per_batch, 1)) * batch_elems + offset_of(r);
      std::memcpy(dst + r * chunk_elems * elem, src + from * elem, chunk_elems * elem);
    }
  };
  return op;
}

}  // namespace

void register_slicing_ops(OpRegistry& r) {
  r.add("slice_by_index", build_slice_by_index);
  r.add("slice_by_size", build_slice_by_size);
  r.add("concat", build_concat);
  r.add("stack", build_stack);
  r.add("split", build_split);
  r.add("gather", build_gather);
  r.add("gather_along_axis", build_gather_along_axis);
  r.add("gather_nd", build_gather_nd);
}

}  // namespace staticllm::mil

// Gathers: gather (with batch_dims), gather_along_axis, gather_nd. Every
// index is checked against its axis (ops/indices.h) before anything is read.
#include <algorithm>
#include <cstring>

#include "mil/kernels/compressed.h"
#include "mil/ops/elementwise_util.h"
#include "mil/ops/indices.h"

namespace staticllm::mil {

namespace {

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

void register_gather_ops(OpRegistry& r) {
  r.add("gather", build_gather);
  r.add("gather_along_axis", build_gather_along_axis);
  r.add("gather_nd", build_gather_nd);
}

}  // namespace staticllm::mil

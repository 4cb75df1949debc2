// Scatters: scatter (along an axis, one index per slice), scatter_along_axis
// (one index per element), scatter_nd (index tuples addressing slices). The
// output starts as a copy of `data`; each update is combined into it by
// `mode` (update, add, sub, mul, div, max, min) in the order of the updates,
// in double (exact for int32 and fp16/fp32). Every index is checked before
// the first write.
#include <algorithm>
#include <cstring>

#include "mil/ops/elementwise_util.h"
#include "mil/ops/indices.h"

namespace staticllm::mil {

namespace {

enum class Mode { kUpdate, kAdd, kSub, kMul, kDiv, kMax, kMin };

Mode read_mode(const OpPlanContext& ctx) {
  // iOS15 defaults scatter and scatter_nd to "add"; every program coremltools writes names the mode
  std::string m = ctx.has("mode") ? ctx.const_string("mode") : "add";
  const std::pair<const char*, Mode> modes[] = {{"update", Mode::kUpdate}, {"add", Mode::kAdd}, {"sub", Mode::kSub},
                                                {"mul", Mode::kMul},       {"div", Mode::kDiv}, {"max", Mode::kMax},
                                                {"min", Mode::kMin}};
  for (const auto& [name, mode] : modes)
    if (m == name) return mode;
  ctx.fail("unknown scatter mode '" + m + "'");
  return Mode::kUpdate;  // not reached: fail() throws
}

double combine(Mode mode, double cur, double upd) {
  switch (mode) {
    case Mode::kUpdate: return upd;
    case Mode::kAdd: return cur + upd;
    case Mode::kSub: return cur - upd;
    case Mode::kMul: return cur * upd;
    case Mode::kDiv: return cur / upd;
    case Mode::kMax: return std::max(cur, upd);
    case Mode::kMin: return std::min(cur, upd);
  }
  return upd;
}

void check_operands(const OpPlanContext& ctx, const ValueType& dt, const ValueType& ut, const ValueType& it,
                    const Shape& expected_updates) {
  if (dt.dtype != ut.dtype) ctx.fail("data and updates must have the same dtype");
  if (!is_index_dtype(it.dtype)) ctx.fail("indices must be integers");
  if (ut.shape != expected_updates) {
    ctx.fail("updates are " + shape_to_string(ut.shape) + ", expected " + shape_to_string(expected_updates));
  }
}

// The planned op: out = data, then `run(targets)` where targets(i) is the
// output element update i goes to (already checked).
template <typename Target>
PlannedOp plan_scatter(OpPlanContext& ctx, const ValueType& dt, int64_t updates, Mode mode, Target target) {
  int ds = ctx.input("data"), is = ctx.input("indices"), us = ctx.input("updates");
  PlannedOp op;
  op.outputs.push_back(dt);
  op.scratch_bytes = static_cast<size_t>(updates) * sizeof(int64_t);
  op.run = [=](const KernelCall& call) {
    auto* at = static_cast<int64_t*>(call.scratch);
    const Tensor& idx = call.in(is);
    for (int64_t i = 0; i < updates; ++i) at[i] = target(idx, i);  // throws before any write
    Tensor& out = call.out(0);
    const Tensor& upd = call.in(us);
    if (out.data() != call.in(ds).data()) std::memcpy(out.data(), call.in(ds).data(), out.nbytes());
    for (int64_t i = 0; i < updates; ++i) {
      const double cur = load_one(out.dtype(), out.data(), at[i]);
      store_one(out.dtype(), out.data(), at[i], combine(mode, cur, load_one(upd.dtype(), upd.data(), i)));
    }
  };
  return op;
}

// updates [pre.., C, post..] go to data[pre.., indices[c], post..]
PlannedOp build_scatter(OpPlanContext& ctx) {
  const ValueType& dt = ctx.type("data");
  const ValueType& it = ctx.type("indices");
  const int64_t rank = static_cast<int64_t>(dt.shape.size());
  const int64_t axis = normalize_axis(ctx, ctx.const_int_or("axis", 0), rank);
  Shape expected(dt.shape.begin(), dt.shape.begin() + axis);
  expected.insert(expected.end(), it.shape.begin(), it.shape.end());
  expected.insert(expected.end(), dt.shape.begin() + axis + 1, dt.shape.end());
  check_operands(ctx, dt, ctx.type("updates"), it, expected);
  const int64_t count = shape_numel(it.shape), dim = dt.shape[axis];
  const int64_t inner = shape_numel(Shape(dt.shape.begin() + axis + 1, dt.shape.end()));
  const IndexRule rule = index_rule(ctx);
  return plan_scatter(ctx, dt, shape_numel(expected), read_mode(ctx), [=](const Tensor& idx, int64_t i) {
    const int64_t o = i / (count * inner), c = (i / inner) % count, q = i % inner;
    return (o * dim + rule(read_index(idx, c), dim)) * inner + q;
  });
}

// updates and indices share a shape; update at (.., j, ..) goes to data (.., indices[.., j, ..], ..)
PlannedOp build_scatter_along_axis(OpPlanContext& ctx) {
  const ValueType& dt = ctx.type("data");
  const ValueType& it = ctx.type("indices");
  const int64_t rank = static_cast<int64_t>(dt.shape.size());
  const int64_t axis = normalize_axis(ctx, ctx.const_int_or("axis", 0), rank);
  if (static_cast<int64_t>(it.shape.size()) != rank) ctx.fail("indices must have the rank of data");
  for (int64_t d = 0; d < rank; ++d) {
    if (d != axis && it.shape[d] != dt.shape[d]) ctx.fail("indices must match data off the scatter axis");
  }
  check_operands(ctx, dt, ctx.type("updates"), it, it.shape);
  const int64_t n = it.shape[axis], dim = dt.shape[axis];
  const int64_t inner = shape_numel(Shape(dt.shape.begin() + axis + 1, dt.shape.end()));
  const IndexRule rule = index_rule(ctx);
  return plan_scatter(ctx, dt, shape_numel(it.shape), read_mode(ctx), [=](const Tensor& idx, int64_t i) {
    const int64_t o = i / (n * inner), q = i % inner;
    return (o * dim + rule(read_index(idx, i), dim)) * inner + q;
  });
}

// indices [M.., K]: update slice m goes to data[indices[m, 0], ..., indices[m, K-1], ...]
PlannedOp build_scatter_nd(OpPlanContext& ctx) {
  const ValueType& dt = ctx.type("data");
  const ValueType& it = ctx.type("indices");
  if (it.shape.empty()) ctx.fail("indices must have rank >= 1");
  const int64_t K = it.shape.back();
  if (K < 0 || K > static_cast<int64_t>(dt.shape.size())) ctx.fail("indices address more dims than data has");
  Shape expected(it.shape.begin(), it.shape.end() - 1);
  expected.insert(expected.end(), dt.shape.begin() + K, dt.shape.end());
  check_operands(ctx, dt, ctx.type("updates"), it, expected);
  Shape indexed(dt.shape.begin(), dt.shape.begin() + K);
  const std::vector<int64_t> strides = contiguous_strides(indexed);
  const int64_t chunk = shape_numel(Shape(dt.shape.begin() + K, dt.shape.end()));
  const IndexRule rule = index_rule(ctx);
  return plan_scatter(ctx, dt, shape_numel(expected), read_mode(ctx), [=](const Tensor& idx, int64_t i) {
    const int64_t m = i / std::max<int64_t>(chunk, 1);
    int64_t off = 0;
    for (int64_t k = 0; k < K; ++k) off += rule(read_index(idx, m * K + k), indexed[k]) * strides[k];
    return off * chunk + i % std::max<int64_t>(chunk, 1);
  });
}

}  // namespace

void register_scatter_ops(OpRegistry& r) {
  r.add("scatter", build_scatter);
  r.add("scatter_along_axis", build_scatter_along_axis);
  r.add("scatter_nd", build_scatter_nd);
}

}  // namespace staticllm::mil

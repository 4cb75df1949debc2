// Ordering along one axis: argsort and topk. Each line along the axis is read
// as doubles (exact for every integer dtype, fp16 widened), its positions are
// sorted stably (equal values keep their order, as numpy's stable argsort
// does) and the first k written out.
#include <algorithm>
#include <numeric>

#include "mil/ops/elementwise_util.h"

namespace staticllm::mil {

namespace {

struct Lines {
  int64_t outer = 1, n = 1, inner = 1;
};

Lines lines_along(const OpPlanContext& ctx, const Shape& shape, int64_t* axis) {
  int64_t rank = static_cast<int64_t>(shape.size());
  if (rank == 0) ctx.fail("x must have rank >= 1");
  *axis = normalize_axis(ctx, *axis, rank);
  Lines l;
  l.n = shape[*axis];
  for (int64_t d = 0; d < *axis; ++d) l.outer *= shape[d];
  for (int64_t d = *axis + 1; d < rank; ++d) l.inner *= shape[d];
  return l;
}

// For every line: sorts positions by value (descending unless `ascending`)
// and calls emit(line offset, sorted positions, values of the line).
template <typename Emit>
void sort_lines(const Tensor& x, const Lines& l, bool ascending, double* vals, int64_t* order, Emit emit) {
  for (int64_t o = 0; o < l.outer; ++o) {
    for (int64_t i = 0; i < l.inner; ++i) {
      const int64_t base = o * l.n * l.inner + i;
      const double* v = load_run<double>(x.dtype(), x.data(), base, l.inner, l.n, vals);
      std::iota(order, order + l.n, int64_t{0});
      if (ascending)
        std::stable_sort(order, order + l.n, [v](int64_t a, int64_t b) { return v[a] < v[b]; });
      else
        std::stable_sort(order, order + l.n, [v](int64_t a, int64_t b) { return v[a] > v[b]; });
      emit(o, i, order, v);
    }
  }
}

DType index_dtype(OpPlanContext& ctx) {
  std::string name = ctx.has("output_indices_dtype") ? ctx.const_string("output_indices_dtype") : "int32";
  if (name != "int32" && name != "uint16") ctx.fail("output_indices_dtype must be int32 or uint16, got '" + name + "'");
  return name == "int32" ? DType::kInt32 : DType::kUInt16;
}

// Writes `len` positions as indices of dtype `t` at element `off`, `step` apart.
void store_positions(Tensor& out, int64_t off, int64_t step, const int64_t* pos, int64_t len) {
  for (int64_t j = 0; j < len; ++j) {
    double v = static_cast<double>(pos[j]);
    store_run<double>(out.dtype(), out.data(), off + j * step, 1, &v);
  }
}

PlannedOp build_argsort(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  int64_t axis = ctx.const_int_or("axis", -1);
  Lines l = lines_along(ctx, xt.shape, &axis);
  bool ascending = ctx.const_bool_or("ascending", false);
  int xs = ctx.input("x");
  PlannedOp op;
  op.outputs.push_back({DType::kInt32, xt.shape});
  op.scratch_bytes = static_cast<size_t>(l.n) * (sizeof(double) + sizeof(int64_t));
  op.run = [=](const KernelCall& call) {
    auto* vals = static_cast<double*>(call.scratch);
    auto* order = reinterpret_cast<int64_t*>(vals + l.n);
    Tensor& out = call.out(0);
    sort_lines(call.in(xs), l, ascending, vals, order, [&](int64_t o, int64_t i, const int64_t* pos, const double*) {
      store_positions(out, o * l.n * l.inner + i, l.inner, pos, l.n);
    });
  };
  return op;
}

PlannedOp build_topk(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  int64_t axis = ctx.const_int_or("axis", -1);
  Lines l = lines_along(ctx, xt.shape, &axis);
  int64_t k = ctx.const_int_or("k", 1);
  if (k == -1) k = l.n;
  if (k < 0 || k > l.n) ctx.fail("k = " + std::to_string(k) + " is out of range for an axis of " + std::to_string(l.n));
  bool ascending = ctx.const_bool_or("ascending", false);
  bool with_indices = ctx.const_bool_or("return_indices", true);
  // sort=False allows any order of the k elements; sorted is one of them
  Shape out = xt.shape;
  out[axis] = k;
  PlannedOp op;
  op.outputs.push_back({xt.dtype, out});
  if (with_indices) op.outputs.push_back({index_dtype(ctx), out});
  int xs = ctx.input("x");
  op.scratch_bytes = static_cast<size_t>(l.n) * (sizeof(double) + sizeof(int64_t));
  op.run = [=](const KernelCall& call) {
    auto* vals = static_cast<double*>(call.scratch);
    auto* order = reinterpret_cast<int64_t*>(vals + l.n);
    sort_lines(call.in(xs), l, ascending, vals, order, [&](int64_t o, int64_t i, const int64_t* pos, const double* v) {
      const int64_t base = o * k * l.inner + i;
      for (int64_t j = 0; j < k; ++j) {
        store_run<double>(call.out(0).dtype(), call.out(0).data(), base + j * l.inner, 1, &v[pos[j]]);
      }
      if (with_indices) store_positions(call.out(1), base, l.inner, pos, k);
    });
  };
  return op;
}

}  // namespace

void register_sort_ops(OpRegistry& r) {
  r.add("argsort", build_argsort);
  r.add("topk", build_topk);
}

}  // namespace staticllm::mil

// Reductions over a contiguous block of axes, softmax and cumsum. The shape is viewed
// as [outer, reduced, inner]; accumulation is in fp32 (double for integers).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "mil/kernels/softmax.h"
#include "mil/ops/elementwise_util.h"
#include "mil/thread_pool.h"

namespace staticllm::mil {

namespace {

struct ReducePlan {
  int64_t outer = 1, reduced = 1, inner = 1;
};

enum class Kind { kSum, kMean, kMax, kMin, kProd, kArgMax, kArgMin, kL1, kL2, kSumSquare, kLogSum, kLogSumExp };

ReducePlan plan_axes(const OpPlanContext& ctx, const Shape& shape, std::vector<int64_t> axes) {
  int64_t rank = static_cast<int64_t>(shape.size());
  for (auto& a : axes) a = normalize_axis(ctx, a, rank);
  std::sort(axes.begin(), axes.end());
  axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
  for (size_t i = 1; i < axes.size(); ++i) {
    if (axes[i] != axes[i - 1] + 1) ctx.fail("only reductions over adjacent axes are supported");
  }
  ReducePlan p;
  for (int64_t d = 0; d < rank; ++d) {
    if (d < axes.front())
      p.outer *= shape[d];
    else if (d <= axes.back())
      p.reduced *= shape[d];
    else
      p.inner *= shape[d];
  }
  return p;
}

template <typename C>
C reduce_row(Kind kind, const C* v, int64_t n, int64_t* arg) {
  switch (kind) {
    case Kind::kMax:
    case Kind::kArgMax: {
      int64_t best = 0;
      for (int64_t i = 1; i < n; ++i)
        if (v[i] > v[best]) best = i;
      *arg = best;
      return v[best];
    }
    case Kind::kMin:
    case Kind::kArgMin: {
      int64_t best = 0;
      for (int64_t i = 1; i < n; ++i)
        if (v[i] < v[best]) best = i;
      *arg = best;
      return v[best];
    }
    case Kind::kProd: {
      C acc = 1;
      for (int64_t i = 0; i < n; ++i) acc *= v[i];
      return acc;
    }
    case Kind::kSumSquare:
    case Kind::kL2: {
      C acc = 0;
      for (int64_t i = 0; i < n; ++i) acc += v[i] * v[i];
      return kind == Kind::kL2 ? std::sqrt(acc) : acc;
    }
    case Kind::kL1: {
      C acc = 0;
      for (int64_t i = 0; i < n; ++i) acc += v[i] < 0 ? -v[i] : v[i];
      return acc;
    }
    case Kind::kLogSum: {
      C acc = 0;
      for (int64_t i = 0; i < n; ++i) acc += v[i];
      return std::log(acc);
    }
    case Kind::kLogSumExp: {
      C m = *std::max_element(v, v + n);
      C acc = 0;
      for (int64_t i = 0; i < n; ++i) acc += std::exp(v[i] - m);
      return m + std::log(acc);
    }
    default: {
      C acc = 0;
      for (int64_t i = 0; i < n; ++i) acc += v[i];
      return kind == Kind::kMean ? acc / static_cast<C>(n) : acc;
    }
  }
}

// Sums, means, maxima, minima and sums of squares of an axis that is not the
// last (inner > 1, as over the channels of [1, C, 1, S] data) combine whole
// contiguous runs of `inner` elements instead of gathering each strided row;
// every output element still sees its values in the same order.
bool runs_combine(Kind kind) {
  return kind == Kind::kSum || kind == Kind::kMean || kind == Kind::kMax || kind == Kind::kMin ||
         kind == Kind::kSumSquare || kind == Kind::kL2;
}

template <typename C>
void run_reduce_runs(Kind kind, const ReducePlan& p, const Tensor& x, Tensor& out, C* acc, C* run) {
  for (int64_t o = 0; o < p.outer; ++o) {
    for (int64_t r = 0; r < p.reduced; ++r) {
      const C* v = load_run<C>(x.dtype(), x.data(), (o * p.reduced + r) * p.inner, 1, p.inner, run);
      for (int64_t i = 0; i < p.inner; ++i) {
        C e = v[i];
        if (kind == Kind::kSumSquare || kind == Kind::kL2) e *= e;
        if (r == 0)
          acc[i] = e;
        else if (kind == Kind::kMax)
          acc[i] = e > acc[i] ? e : acc[i];
        else if (kind == Kind::kMin)
          acc[i] = e < acc[i] ? e : acc[i];
        else
          acc[i] += e;
      }
    }
    for (int64_t i = 0; i < p.inner; ++i) {
      if (kind == Kind::kMean) acc[i] /= static_cast<C>(p.reduced);
      if (kind == Kind::kL2) acc[i] = std::sqrt(acc[i]);
    }
    store_run<C>(out.dtype(), out.data(), o * p.inner, p.inner, acc);
  }
}

// Gathers one reduced row (stride `inner`) into `row`, reduces it, stores one value.
template <typename C>
void run_reduce(Kind kind, const ReducePlan& p, const Tensor& x, Tensor& out, C* row) {
  if (p.inner > 1 && runs_combine(kind)) return run_reduce_runs<C>(kind, p, x, out, row, row + p.inner);
  bool arg = kind == Kind::kArgMax || kind == Kind::kArgMin;
  for (int64_t o = 0; o < p.outer; ++o) {
    for (int64_t i = 0; i < p.inner; ++i) {
      int64_t base = o * p.reduced * p.inner + i;
      const C* vals = load_run<C>(x.dtype(), x.data(), base, p.inner, p.reduced, row);
      int64_t index = 0;
      C r = reduce_row<C>(kind, vals, p.reduced, &index);
      if (arg) r = static_cast<C>(index);
      store_run<C>(out.dtype(), out.data(), o * p.inner + i, 1, &r);
    }
  }
}

OpBuilder reduce(Kind kind) {
  return [kind](OpPlanContext& ctx) {
    const ValueType& xt = ctx.type("x");
    int64_t rank = static_cast<int64_t>(xt.shape.size());
    std::vector<int64_t> axes;
    bool arg = kind == Kind::kArgMax || kind == Kind::kArgMin;
    if (arg) {
      axes = {ctx.const_int_or("axis", -1)};
    } else if (ctx.has("axes")) {
      axes = ctx.const_ints("axes");
    } else {
      axes.resize(rank);
      std::iota(axes.begin(), axes.end(), 0);
    }
    if (axes.empty() || rank == 0) ctx.fail("nothing to reduce");
    ReducePlan p = plan_axes(ctx, xt.shape, axes);
    bool keep = ctx.const_bool_or("keep_dims", false);
    Shape out_shape;
    for (int64_t d = 0; d < rank; ++d) {
      bool reduced = false;
      for (int64_t a : axes) reduced |= normalize_axis(ctx, a, rank) == d;
      if (!reduced)
        out_shape.push_back(xt.shape[d]);
      else if (keep)
        out_shape.push_back(1);
    }
    DType out_dtype = xt.dtype;
    if (arg) {  // iOS17: int32 or uint16 indices
      std::string name = ctx.has("output_dtype") ? ctx.const_string("output_dtype") : "int32";
      if (name != "int32" && name != "uint16") ctx.fail("output_dtype must be int32 or uint16, got '" + name + "'");
      out_dtype = name == "int32" ? DType::kInt32 : DType::kUInt16;
    }
    PlannedOp op;
    op.outputs.push_back({out_dtype, out_shape});
    bool use_float = is_float_dtype(xt.dtype);
    op.scratch_bytes = static_cast<size_t>(std::max(p.reduced, 2 * p.inner)) * 8;
    int xs = ctx.input("x");
    op.run = [kind, p, xs, use_float](const KernelCall& call) {
      if (use_float)
        run_reduce<float>(kind, p, call.in(xs), call.out(0), static_cast<float*>(call.scratch));
      else
        run_reduce<double>(kind, p, call.in(xs), call.out(0), static_cast<double*>(call.scratch));
    };
    return op;
  };
}

// Below this many elements a softmax stays on the calling thread (waking the
// pool costs more than it saves).
constexpr int64_t kParallelMinElements = 1 << 15;

// softmax over one axis for rows [r0, r1) of the outer x inner rows; the
// common last-axis case reads contiguous rows. `row` holds n floats.
void softmax_rows(const Tensor& x, Tensor& out, int64_t n, int64_t inner, int64_t r0, int64_t r1, float* row) {
  for (int64_t r = r0; r < r1; ++r) {
    int64_t base = (r / inner) * n * inner + r % inner;
    const float* v = load_run<float>(x.dtype(), x.data(), base, inner, n, row);
    softmax_row(v, row, n);
    if (inner == 1) {
      store_run<float>(out.dtype(), out.data(), base, n, row);
    } else {
      for (int64_t k = 0; k < n; ++k) store_run<float>(out.dtype(), out.data(), base + k * inner, 1, row + k);
    }
  }
}

PlannedOp build_softmax(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  if (!is_float_dtype(xt.dtype)) ctx.fail("softmax needs a float input");
  int64_t rank = static_cast<int64_t>(xt.shape.size());
  int64_t axis = normalize_axis(ctx, ctx.const_int_or("axis", -1), rank);
  int64_t outer = 1, inner = 1, n = xt.shape[axis];
  for (int64_t d = 0; d < axis; ++d) outer *= xt.shape[d];
  for (int64_t d = axis + 1; d < rank; ++d) inner *= xt.shape[d];
  const int64_t rows = outer * inner;
  // Attention softmax over [heads, seq, context] is a tenth of a prefill call:
  // split the rows over the pool, one row buffer per part.
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(default_thread_pool().size(), rows));
  PlannedOp op;
  op.outputs.push_back(xt);
  int xs = ctx.input("x");
  op.scratch_bytes = static_cast<size_t>(n * parts) * sizeof(float);
  op.run = [=](const KernelCall& call) {
    const Tensor& x = call.in(xs);
    Tensor& out = call.out(0);
    auto* rowbufs = static_cast<float*>(call.scratch);
    auto run_parts = [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p)
        softmax_rows(x, out, n, inner, rows * p / parts, rows * (p + 1) / parts, rowbufs + p * n);
    };
    if (call.pool == nullptr || parts == 1 || rows * n < kParallelMinElements)
      run_parts(0, parts);
    else
      call.pool->parallel_for(parts, 1, run_parts);
  };
  return op;
}

// Running sums along an axis (inclusive or exclusive, forward or reversed),
// accumulated in double: exact for int32, fp32-or-better for floats.
PlannedOp build_cumsum(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const int64_t rank = static_cast<int64_t>(xt.shape.size());
  const int64_t axis = normalize_axis(ctx, ctx.const_int_or("axis", 0), rank);
  const bool exclusive = ctx.const_bool_or("exclusive", false), reverse = ctx.const_bool_or("reverse", false);
  const int64_t n = rank == 0 ? 1 : xt.shape[axis];
  const int64_t inner = rank == 0 ? 1 : shape_numel(Shape(xt.shape.begin() + axis + 1, xt.shape.end()));
  const int64_t outer = shape_numel(xt.shape) / std::max<int64_t>(1, n * inner);
  int xs = ctx.input("x");
  PlannedOp op;
  op.outputs.push_back(xt);
  op.run = [=](const KernelCall& call) {
    const Tensor& x = call.in(xs);
    Tensor& out = call.out(0);
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t i = 0; i < inner; ++i) {
        double acc = 0;
        for (int64_t k = 0; k < n; ++k) {
          const int64_t at = (o * n + (reverse ? n - 1 - k : k)) * inner + i;
          const double v = load_one(x.dtype(), x.data(), at);
          store_one(out.dtype(), out.data(), at, exclusive ? acc : acc + v);
          acc += v;
        }
      }
    }
  };
  return op;
}

}  // namespace

void register_reduction_ops(OpRegistry& r) {
  r.add("reduce_sum", reduce(Kind::kSum));
  r.add("reduce_mean", reduce(Kind::kMean));
  r.add("reduce_max", reduce(Kind::kMax));
  r.add("reduce_min", reduce(Kind::kMin));
  r.add("reduce_prod", reduce(Kind::kProd));
  r.add("reduce_argmax", reduce(Kind::kArgMax));
  r.add("reduce_argmin", reduce(Kind::kArgMin));
  r.add("reduce_l1_norm", reduce(Kind::kL1));
  r.add("reduce_l2_norm", reduce(Kind::kL2));
  r.add("reduce_log_sum", reduce(Kind::kLogSum));
  r.add("reduce_sum_square", reduce(Kind::kSumSquare));
  r.add("reduce_log_sum_exp", reduce(Kind::kLogSumExp));
  r.add("softmax", build_softmax);
  r.add("cumsum", build_cumsum);
}

}  // namespace staticllm::mil

// Binary elementwise ops with numpy broadcasting: arithmetic, comparisons,
// logical ops. Float tensors compute in fp32 (fp16 is converted per block),
// integer tensors in double so int32 results stay exact.
#include <cmath>

#include "mil/ops/elementwise_util.h"

namespace staticllm::mil {

namespace {

enum class Result { kSame, kBool };

template <typename C, typename F>
void run_binary(const BroadcastPlan& plan, const Tensor& x, const Tensor& y, Tensor& out, ThreadPool* pool, F f) {
  for_blocks(pool, out.numel(), plan.runs(), [&](int64_t r0, int64_t r1) {
    C xb[kBlock], yb[kBlock], ob[kBlock];
    plan.for_runs(r0, r1, [&](const int64_t* offs, const int64_t* steps, int64_t out_off, int64_t len) {
      const C* xs = load_run<C>(x.dtype(), x.data(), offs[0], steps[0], len, xb);
      const C* ys = load_run<C>(y.dtype(), y.data(), offs[1], steps[1], len, yb);
      for (int64_t i = 0; i < len; ++i) ob[i] = f(xs[i], ys[i]);
      store_run<C>(out.dtype(), out.data(), out_off, len, ob);
    });
  });
}

template <typename F>
OpBuilder binary(Result result, bool float_only, bool bool_only, F f) {
  return [=](OpPlanContext& ctx) {
    const ValueType& xt = ctx.type("x");
    const ValueType& yt = ctx.type("y");
    if (xt.dtype != yt.dtype) {
      ctx.fail(std::string("x and y must have the same dtype, got ") + dtype_name(xt.dtype) + " and " +
               dtype_name(yt.dtype));
    }
    if (float_only && !is_float_dtype(xt.dtype))
      ctx.fail(std::string("needs a float dtype, got ") + dtype_name(xt.dtype));
    if (bool_only && xt.dtype != DType::kBool) ctx.fail(std::string("needs bool inputs, got ") + dtype_name(xt.dtype));
    BroadcastPlan plan;
    if (!plan_broadcast({xt.shape, yt.shape}, &plan)) {
      ctx.fail("shapes " + shape_to_string(xt.shape) + " and " + shape_to_string(yt.shape) + " do not broadcast");
    }
    int xs = ctx.input("x");
    int ys = ctx.input("y");
    PlannedOp op;
    op.outputs.push_back({result == Result::kBool ? DType::kBool : xt.dtype, plan.out_shape});
    bool use_float = is_float_dtype(xt.dtype);
    op.run = [plan, xs, ys, use_float, f](const KernelCall& call) {
      if (use_float) {
        run_binary<float>(plan, call.in(xs), call.in(ys), call.out(0), call.pool,
                          [&](float a, float b) { return static_cast<float>(f(a, b)); });
      } else {
        run_binary<double>(plan, call.in(xs), call.in(ys), call.out(0), call.pool,
                           [&](double a, double b) { return static_cast<double>(f(a, b)); });
      }
    };
    return op;
  };
}

// Python-style floor division and modulo (the sign follows the divisor).
template <typename T>
T floor_div(T a, T b) {
  return std::floor(a / b);
}
template <typename T>
T floor_mod(T a, T b) {
  T r = std::fmod(a, b);
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

}  // namespace

void register_elementwise_binary_ops(OpRegistry& r) {
  r.add("add", binary(Result::kSame, false, false, [](auto a, auto b) { return a + b; }));
  r.add("sub", binary(Result::kSame, false, false, [](auto a, auto b) { return a - b; }));
  r.add("mul", binary(Result::kSame, false, false, [](auto a, auto b) { return a * b; }));
  r.add("real_div", binary(Result::kSame, false, false, [](auto a, auto b) { return a / b; }));
  // RMSNorm squares with pow(x, 2): multiply (exactly what pow rounds to) instead of the libm call.
  r.add("pow", binary(Result::kSame, false, false, [](auto a, auto b) { return b == 2 ? a * a : std::pow(a, b); }));
  r.add("maximum", binary(Result::kSame, false, false, [](auto a, auto b) { return a > b ? a : b; }));
  r.add("minimum", binary(Result::kSame, false, false, [](auto a, auto b) { return a < b ? a : b; }));
  r.add("floor_div", binary(Result::kSame, false, false, [](auto a, auto b) { return floor_div(a, b); }));
  r.add("mod", binary(Result::kSame, false, false, [](auto a, auto b) { return floor_mod(a, b); }));
  r.add("equal", binary(Result::kBool, false, false, [](auto a, auto b) { return a == b ? 1 : 0; }));
  r.add("not_equal", binary(Result::kBool, false, false, [](auto a, auto b) { return a != b ? 1 : 0; }));
  r.add("less", binary(Result::kBool, false, false, [](auto a, auto b) { return a < b ? 1 : 0; }));
  r.add("less_equal", binary(Result::kBool, false, false, [](auto a, auto b) { return a <= b ? 1 : 0; }));
  r.add("greater", binary(Result::kBool, false, false, [](auto a, auto b) { return a > b ? 1 : 0; }));
  r.add("greater_equal", binary(Result::kBool, false, false, [](auto a, auto b) { return a >= b ? 1 : 0; }));
  r.add("logical_and", binary(Result::kSame, false, true, [](auto a, auto b) { return (a != 0 && b != 0) ? 1 : 0; }));
  r.add("logical_or", binary(Result::kSame, false, true, [](auto a, auto b) { return (a != 0 || b != 0) ? 1 : 0; }));
  r.add("logical_xor",
        binary(Result::kSame, false, true, [](auto a, auto b) { return ((a != 0) != (b != 0)) ? 1 : 0; }));
}

}  // namespace staticllm::mil

// Unary elementwise ops: math functions and activations. Float tensors
// compute in fp32, fp16 converted per block; integers in double.
#include <cmath>

#include "mil/kernels/activation.h"
#include "mil/ops/elementwise_util.h"

namespace staticllm::mil {

namespace {

// A unary op whose function may read float parameters (epsilon, alpha...)
// fixed at plan time.
using ParamReader = std::vector<double> (*)(const OpPlanContext&);

// out = block(x) over blocks of kBlock elements converted to C:
// block(const C* in, C* out, len).
template <typename C, typename B>
void run_blocks(const Tensor& x, Tensor& out, ThreadPool* pool, B block) {
  const int64_t n = x.numel();
  for_blocks(pool, n, (n + kBlock - 1) / kBlock, [&](int64_t b0, int64_t b1) {
    alignas(64) C xb[kBlock], ob[kBlock];
    for (int64_t start = b0 * kBlock; start < std::min(n, b1 * kBlock); start += kBlock) {
      int64_t len = std::min(kBlock, n - start);
      block(load_run<C>(x.dtype(), x.data(), start, 1, len, xb), ob, len);
      store_run<C>(out.dtype(), out.data(), start, len, ob);
    }
  });
}

template <typename C, typename F>
void run_unary(const Tensor& x, Tensor& out, ThreadPool* pool, F f) {
  run_blocks<C>(x, out, pool, [&](const C* xs, C* ob, int64_t len) {
    for (int64_t i = 0; i < len; ++i) ob[i] = f(xs[i]);
  });
}

// `make(params)` returns the elementwise function given plan-time parameters.
template <typename Make>
OpBuilder unary(bool float_only, bool bool_only, std::vector<const char*> param_names, std::vector<double> defaults,
                Make make) {
  return [=](OpPlanContext& ctx) {
    const ValueType& xt = ctx.type("x");
    if (float_only && !is_float_dtype(xt.dtype))
      ctx.fail(std::string("needs a float dtype, got ") + dtype_name(xt.dtype));
    if (bool_only && xt.dtype != DType::kBool) ctx.fail(std::string("needs a bool input, got ") + dtype_name(xt.dtype));
    std::vector<double> params(defaults);
    for (size_t i = 0; i < param_names.size(); ++i) {
      if (ctx.has(param_names[i])) params[i] = ctx.const_float(param_names[i]);
    }
    auto f = make(params);
    int xs = ctx.input("x");
    PlannedOp op;
    op.outputs.push_back(xt);
    bool use_float = is_float_dtype(xt.dtype);
    op.run = [xs, use_float, f](const KernelCall& call) {
      if (use_float) {
        run_unary<float>(call.in(xs), call.out(0), call.pool, [&](float v) { return static_cast<float>(f(v)); });
      } else {
        run_unary<double>(call.in(xs), call.out(0), call.pool, [&](double v) { return static_cast<double>(f(v)); });
      }
    };
    return op;
  };
}

// A float-only activation with a vector kernel (kernels/activation.h) over
// blocks of fp32 (fp16 widened per block).
OpBuilder vectorized(void (*kernel)(const float*, float*, int64_t)) {
  return [kernel](OpPlanContext& ctx) {
    const ValueType& xt = ctx.type("x");
    if (!is_float_dtype(xt.dtype)) ctx.fail(std::string("needs a float dtype, got ") + dtype_name(xt.dtype));
    int xs = ctx.input("x");
    PlannedOp op;
    op.outputs.push_back(xt);
    op.run = [xs, kernel](const KernelCall& call) { run_blocks<float>(call.in(xs), call.out(0), call.pool, kernel); };
    return op;
  };
}

// Shorthand for functions without parameters.
template <typename F>
OpBuilder simple(F f, bool float_only = true) {
  return unary(float_only, false, {}, {}, [f](const std::vector<double>&) { return f; });
}

float gelu_exact(float v) { return 0.5f * v * (1.0f + std::erf(v * 0.70710678f)); }
float gelu_tanh(float v) { return 0.5f * v * (1.0f + std::tanh(0.7978845608f * (v + 0.044715f * v * v * v))); }
float gelu_sigmoid(float v) { return v / (1.0f + std::exp(-1.702f * v)); }

PlannedOp build_gelu(OpPlanContext& ctx) {
  std::string mode = ctx.has("mode") ? ctx.const_string("mode") : "EXACT";
  float (*fn)(float) = nullptr;
  if (mode == "EXACT") fn = gelu_exact;
  if (mode == "TANH_APPROXIMATION") fn = gelu_tanh;
  if (mode == "SIGMOID_APPROXIMATION") fn = gelu_sigmoid;
  if (fn == nullptr) ctx.fail("unknown gelu mode '" + mode + "'");
  return unary(true, false, {}, {},
               [fn](const std::vector<double>&) { return [fn](auto v) { return fn(static_cast<float>(v)); }; })(ctx);
}

// Activations with a parameter per channel (axis 1): alpha and beta [C].
// f(x, alpha[c], beta[c]); beta reads as 0 for an op without one.
template <typename F>
OpBuilder per_channel(bool has_beta, F f) {
  return [=](OpPlanContext& ctx) {
    const ValueType& xt = ctx.type("x");
    if (!is_float_dtype(xt.dtype)) ctx.fail(std::string("needs a float dtype, got ") + dtype_name(xt.dtype));
    if (xt.shape.size() < 2) ctx.fail("x needs rank >= 2 (channels on axis 1)");
    const int64_t C = xt.shape[1];
    std::vector<float> alpha = const_floats(ctx, "alpha");
    std::vector<float> beta = has_beta ? const_floats(ctx, "beta") : std::vector<float>(alpha.size(), 0.f);
    if (static_cast<int64_t>(alpha.size()) != C || static_cast<int64_t>(beta.size()) != C) {
      ctx.fail("alpha" + std::string(has_beta ? " and beta need " : " needs ") + std::to_string(C) +
               " values, one per channel of x " + shape_to_string(xt.shape));
    }
    const int64_t inner = shape_numel(xt.shape) / std::max<int64_t>(1, xt.shape[0] * C);
    const int64_t rows = shape_numel(xt.shape) / std::max<int64_t>(1, inner);  // [N * C] runs of `inner`
    int xs = ctx.input("x");
    PlannedOp op;
    op.outputs.push_back(xt);
    op.run = [=](const KernelCall& call) {
      float xb[kBlock], ob[kBlock];
      const Tensor& x = call.in(xs);
      for (int64_t r = 0; r < rows; ++r) {
        const float a = alpha[r % C], b = beta[r % C];
        for (int64_t s = 0; s < inner; s += kBlock) {
          int64_t len = std::min(kBlock, inner - s);
          const float* v = load_run<float>(x.dtype(), x.data(), r * inner + s, 1, len, xb);
          for (int64_t i = 0; i < len; ++i) ob[i] = f(v[i], a, b);
          store_run<float>(call.out(0).dtype(), call.out(0).data(), r * inner + s, len, ob);
        }
      }
    };
    return op;
  };
}

// log(1 + e^v) without overflow for large v
template <typename T>
T softplus(T v) {
  return std::max(v, T(0)) + std::log1p(std::exp(-std::abs(v)));
}

}  // namespace

void register_elementwise_unary_ops(OpRegistry& r) {
  r.add("rsqrt", unary(true, false, {"epsilon"}, {1e-12}, [](const std::vector<double>& p) {
          float eps = static_cast<float>(p[0]);
          return [eps](auto v) { return 1.0f / std::sqrt(static_cast<float>(v) + eps); };
        }));
  r.add("inverse", unary(true, false, {"epsilon"}, {1e-4}, [](const std::vector<double>& p) {
          float eps = static_cast<float>(p[0]);
          return [eps](auto v) { return 1.0f / (static_cast<float>(v) + eps); };
        }));
  r.add("log", unary(true, false, {"epsilon"}, {1e-45}, [](const std::vector<double>& p) {
          float eps = static_cast<float>(p[0]);
          return [eps](auto v) { return std::log(static_cast<float>(v) + eps); };
        }));
  r.add("clip", unary(true, false, {"alpha", "beta"}, {0.0, 1.0}, [](const std::vector<double>& p) {
          float lo = static_cast<float>(p[0]), hi = static_cast<float>(p[1]);
          return [lo, hi](auto v) { return std::min(std::max(static_cast<float>(v), lo), hi); };
        }));
  r.add("threshold", unary(true, false, {"alpha"}, {0.0}, [](const std::vector<double>& p) {
          float a = static_cast<float>(p[0]);
          return [a](auto v) { return std::max(static_cast<float>(v), a); };
        }));
  r.add("leaky_relu", unary(true, false, {"alpha"}, {0.01}, [](const std::vector<double>& p) {
          float a = static_cast<float>(p[0]);
          return [a](auto v) { return v >= 0 ? static_cast<float>(v) : a * static_cast<float>(v); };
        }));
  r.add("sqrt", simple([](auto v) { return std::sqrt(v); }));
  r.add("exp", simple([](auto v) { return std::exp(v); }));
  r.add("exp2", simple([](auto v) { return std::exp2(v); }));
  r.add("abs", simple([](auto v) { return v < 0 ? -v : v; }, false));
  r.add("sign", simple([](auto v) { return static_cast<decltype(v)>((v > 0) - (v < 0)); }, false));
  r.add("ceil", simple([](auto v) { return std::ceil(v); }));
  r.add("floor", simple([](auto v) { return std::floor(v); }));
  r.add("round", simple([](auto v) { return std::nearbyint(v); }));
  r.add("square", simple([](auto v) { return v * v; }, false));
  r.add("sin", simple([](auto v) { return std::sin(v); }));
  r.add("cos", simple([](auto v) { return std::cos(v); }));
  r.add("tan", simple([](auto v) { return std::tan(v); }));
  r.add("tanh", simple([](auto v) { return std::tanh(v); }));
  r.add("erf", simple([](auto v) { return std::erf(v); }));
  r.add("relu", simple([](auto v) { return v > 0 ? v : decltype(v)(0); }));
  r.add("sigmoid", vectorized(sigmoid_n));
  r.add("silu", vectorized(silu_n));
  // log(1 + e^v) = v + log(1 + e^-v): exp of a large positive v overflows
  r.add("softplus", simple([](auto v) { return softplus(v); }));
  r.add("acos", simple([](auto v) { return std::acos(v); }));
  r.add("asin", simple([](auto v) { return std::asin(v); }));
  r.add("atan", simple([](auto v) { return std::atan(v); }));
  r.add("atanh", simple([](auto v) { return std::atanh(v); }));
  r.add("cosh", simple([](auto v) { return std::cosh(v); }));
  r.add("sinh", simple([](auto v) { return std::sinh(v); }));
  r.add("relu6", simple([](auto v) { return std::min(std::max(v, decltype(v)(0)), decltype(v)(6)); }));
  r.add("softsign", simple([](auto v) { return v / (decltype(v)(1) + std::abs(v)); }));
  r.add("elu", unary(true, false, {"alpha"}, {1.0}, [](const std::vector<double>& p) {
          float a = static_cast<float>(p[0]);
          return [a](auto v) { return v > 0 ? static_cast<float>(v) : a * std::expm1(static_cast<float>(v)); };
        }));
  r.add("thresholded_relu", unary(true, false, {"alpha"}, {1.0}, [](const std::vector<double>& p) {
          float a = static_cast<float>(p[0]);
          return [a](auto v) { return static_cast<float>(v) >= a ? static_cast<float>(v) : 0.0f; };
        }));
  // max(x, 0) clipped at beta, plus alpha * min(x, 0) clipped at beta
  r.add("clamped_relu", unary(true, false, {"alpha", "beta"}, {0.0, 6.0}, [](const std::vector<double>& p) {
          float a = static_cast<float>(p[0]), b = static_cast<float>(p[1]);
          return [a, b](auto v) {
            float x = static_cast<float>(v);
            return std::min(std::max(x, 0.0f), b) + std::min(std::min(x, 0.0f) * a, b);
          };
        }));
  r.add("linear_activation", unary(true, false, {"alpha", "beta"}, {1.0, 0.0}, [](const std::vector<double>& p) {
          float a = static_cast<float>(p[0]), b = static_cast<float>(p[1]);
          return [a, b](auto v) { return a * static_cast<float>(v) + b; };
        }));
  r.add("scaled_tanh", unary(true, false, {"alpha", "beta"}, {1.0, 1.0}, [](const std::vector<double>& p) {
          float a = static_cast<float>(p[0]), b = static_cast<float>(p[1]);
          return [a, b](auto v) { return a * std::tanh(b * static_cast<float>(v)); };
        }));
  r.add("sigmoid_hard", unary(true, false, {"alpha", "beta"}, {0.2, 0.5}, [](const std::vector<double>& p) {
          float a = static_cast<float>(p[0]), b = static_cast<float>(p[1]);
          return [a, b](auto v) { return std::min(std::max(a * static_cast<float>(v) + b, 0.0f), 1.0f); };
        }));
  r.add("prelu", per_channel(false, [](float v, float a, float) { return v > 0 ? v : a * v; }));
  r.add("softplus_parametric", per_channel(true, [](float v, float a, float b) { return a * softplus(b * v); }));
  r.add("gelu", build_gelu);
  r.add("logical_not",
        unary(false, true, {}, {}, [](const std::vector<double>&) { return [](auto v) { return v != 0 ? 0 : 1; }; }));
}

}  // namespace staticllm::mil

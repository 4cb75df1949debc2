// Op-table entries of runtime/mil/ops/elementwise_unary.cpp: math functions
// on ranges where they are defined, activations across [-100, 100] (both
// saturated ends included), parameters given and defaulted.
#include <cmath>

#include "op_table.h"

namespace staticllm::test::optable {
namespace {

using Fn = double (*)(double);

Spec any_sign() { return F({2, 4}, {-3, -1.25, -0.5, 0, 0.3, 1, 2.5, 4}); }
Spec positive() { return F({2, 4}, {0.01, 0.25, 0.5, 1, 2, 3.5, 10, 100}); }
Spec wide() { return F({2, 5}, {-100, -20, -3, -1.25, -0.5, 0, 0.3, 2.5, 20, 100}); }

double param(const Inputs& in, const std::string& name, double fallback) {
  return in.has(name) ? in[name].v[0] : fallback;
}

Entry unary(const std::string& type, const std::string& what, Spec x, Fn f) {
  return op(type, what).in("x", std::move(x)).reference([f](const Inputs& in) {
    return std::vector<Array>{map(in["x"], f)};
  });
}

double sigmoid(double v) { return 1 / (1 + std::exp(-v)); }

std::vector<Entry> math() {
  return {
      unary("sqrt", "positive", positive(), [](double v) { return std::sqrt(v); }),
      unary("exp", "both signs", any_sign(), [](double v) { return std::exp(v); }),
      unary("exp2", "both signs", any_sign(), [](double v) { return std::exp2(v); }),
      unary("abs", "both signs", any_sign(), [](double v) { return std::abs(v); }),
      unary("abs", "int32", I32({4}, {-3, 0, 2, -1}), [](double v) { return std::abs(v); }),
      unary("sign", "both signs and 0", any_sign(), [](double v) { return v > 0   ? 1.0
                                                                          : v < 0 ? -1.0
                                                                                  : 0.0; }),
      unary("sign", "int32", I32({4}, {-3, 0, 2, -1}), [](double v) { return v > 0   ? 1.0
                                                                             : v < 0 ? -1.0
                                                                                     : 0.0; }),
      unary("ceil", "both signs", any_sign(), [](double v) { return std::ceil(v); }),
      unary("floor", "both signs", any_sign(), [](double v) { return std::floor(v); }),
      // ties to even, as numpy rounds
      op("round", "ties to even")
          .in("x", F({8}, {-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.25, -3.75}))
          .expect({F({8}, {-2, -2, 0, 0, 2, 2, 0, -4})}),
      unary("square", "both signs", any_sign(), [](double v) { return v * v; }),
      unary("square", "int32", I32({4}, {-3, 0, 2, -1}), [](double v) { return v * v; }),
      unary("sin", "both signs", any_sign(), [](double v) { return std::sin(v); }),
      unary("cos", "both signs", any_sign(), [](double v) { return std::cos(v); }),
      unary("tan", "within (-pi/2, pi/2)", F({6}, {-1.25, -0.5, 0, 0.3, 1, 1.5}), [](double v) { return std::tan(v); })
          .tol16(2e-3, 1e-3),
      unary("tanh", "[-100, 100]", wide(), [](double v) { return std::tanh(v); }),
      unary("erf", "[-100, 100]", wide(), [](double v) { return std::erf(v); }),
      unary("acos", "[-1, 1]", F({6}, {-1, -0.75, -0.2, 0, 0.5, 1}), [](double v) { return std::acos(v); }),
      unary("asin", "[-1, 1]", F({6}, {-1, -0.75, -0.2, 0, 0.5, 1}), [](double v) { return std::asin(v); }),
      unary("atan", "[-100, 100]", wide(), [](double v) { return std::atan(v); }),
      unary("atanh", "(-1, 1)", F({6}, {-0.9, -0.75, -0.2, 0, 0.5, 0.9}), [](double v) { return std::atanh(v); })
          .tol16(2e-3, 2e-3),
      unary("cosh", "both signs", any_sign(), [](double v) { return std::cosh(v); }),
      unary("sinh", "both signs", any_sign(), [](double v) { return std::sinh(v); }),
      op("logical_not", "both values").in("x", Bool({2}, {0, 1})).expect({Bool({2}, {1, 0})}),
  };
}

std::vector<Entry> with_parameters() {
  return {
      op("rsqrt", "epsilon given").in("x", positive()).scalar("epsilon", 1e-3).reference([](const Inputs& in) {
        double eps = in["epsilon"].v[0];
        return std::vector<Array>{map(in["x"], [eps](double v) { return 1 / std::sqrt(v + eps); })};
      }),
      op("rsqrt", "epsilon defaults to 1e-12").in("x", positive()).reference([](const Inputs& in) {
        return std::vector<Array>{map(in["x"], [](double v) { return 1 / std::sqrt(v + 1e-12); })};
      }),
      op("inverse", "epsilon defaults to 1e-4").in("x", positive()).reference([](const Inputs& in) {
        return std::vector<Array>{map(in["x"], [](double v) { return 1 / (v + 1e-4); })};
      }),
      op("inverse", "epsilon given").in("x", positive()).scalar("epsilon", 0.5).reference([](const Inputs& in) {
        double eps = in["epsilon"].v[0];
        return std::vector<Array>{map(in["x"], [eps](double v) { return 1 / (v + eps); })};
      }),
      op("log", "epsilon defaults to 1e-45").in("x", positive()).reference([](const Inputs& in) {
        return std::vector<Array>{map(in["x"], [](double v) { return std::log(v + 1e-45); })};
      }),
      op("log", "epsilon given").in("x", positive()).scalar("epsilon", 0.125).reference([](const Inputs& in) {
        double eps = in["epsilon"].v[0];
        return std::vector<Array>{map(in["x"], [eps](double v) { return std::log(v + eps); })};
      }),
      op("clip", "to [alpha, beta]")
          .in("x", any_sign())
          .scalar("alpha", -1)
          .scalar("beta", 2)
          .reference([](const Inputs& in) {
            double lo = in["alpha"].v[0], hi = in["beta"].v[0];
            return std::vector<Array>{map(in["x"], [=](double v) { return std::min(std::max(v, lo), hi); })};
          }),
      op("threshold", "max(x, alpha)").in("x", any_sign()).scalar("alpha", 0.5).reference([](const Inputs& in) {
        double a = in["alpha"].v[0];
        return std::vector<Array>{map(in["x"], [a](double v) { return std::max(v, a); })};
      }),
      op("leaky_relu", "alpha given").in("x", wide()).scalar("alpha", 0.2).reference([](const Inputs& in) {
        double a = param(in, "alpha", 0.01);
        return std::vector<Array>{map(in["x"], [a](double v) { return v >= 0 ? v : a * v; })};
      }),
      op("leaky_relu", "alpha defaults to 0.01").in("x", wide()).reference([](const Inputs& in) {
        return std::vector<Array>{map(in["x"], [](double v) { return v >= 0 ? v : 0.01 * v; })};
      }),
  };
}

using Fn2 = double (*)(double, double, double);

Entry with_alpha(const std::string& type, double alpha, Fn2 f) {
  return op(type, "alpha " + std::to_string(alpha) + ", [-100, 100]")
      .in("x", wide())
      .scalar("alpha", alpha)
      .reference([f](const Inputs& in) {
        double a = in["alpha"].v[0];
        return std::vector<Array>{map(in["x"], [=](double v) { return f(v, a, 0); })};
      });
}

Entry with_alpha_beta(const std::string& type, double alpha, double beta, Fn2 f) {
  return op(type, "alpha " + std::to_string(alpha) + ", beta " + std::to_string(beta) + ", [-100, 100]")
      .in("x", wide())
      .scalar("alpha", alpha)
      .scalar("beta", beta)
      .reference([f](const Inputs& in) {
        double a = in["alpha"].v[0], b = in["beta"].v[0];
        return std::vector<Array>{map(in["x"], [=](double v) { return f(v, a, b); })};
      });
}

std::vector<Entry> activations() {
  const double sqrt_2_over_pi = std::sqrt(2 / M_PI);
  auto gelu = [](const std::string& mode, std::function<double(double)> f) {
    Entry e = op("gelu", (mode.empty() ? "mode defaults to EXACT" : mode) + ", [-100, 100]").in("x", wide());
    if (!mode.empty()) e.string("mode", mode);
    return e.reference([f](const Inputs& in) { return std::vector<Array>{map(in["x"], f)}; });
  };
  return {
      unary("relu", "[-100, 100]", wide(), [](double v) { return std::max(v, 0.0); }),
      unary("sigmoid", "[-100, 100]", wide(), sigmoid),
      unary("silu", "[-100, 100]", wide(), [](double v) { return v * sigmoid(v); }),
      unary("softplus", "[-100, 100]", wide(), [](double v) { return std::log1p(std::exp(v)); }),
      gelu("", [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }),
      gelu("EXACT", [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }),
      gelu("TANH_APPROXIMATION",
           [=](double v) { return 0.5 * v * (1 + std::tanh(sqrt_2_over_pi * (v + 0.044715 * v * v * v))); }),
      gelu("SIGMOID_APPROXIMATION", [](double v) { return v * sigmoid(1.702 * v); }),
      unary("relu6", "[-100, 100]", wide(), [](double v) { return std::min(std::max(v, 0.0), 6.0); }),
      unary("softsign", "[-100, 100]", wide(), [](double v) { return v / (1 + std::abs(v)); }),
      with_alpha("elu", 2, [](double v, double a, double) { return v > 0 ? v : a * std::expm1(v); }),
      op("elu", "alpha defaults to 1").in("x", wide()).reference([](const Inputs& in) {
        return std::vector<Array>{map(in["x"], [](double v) { return v > 0 ? v : std::expm1(v); })};
      }),
      with_alpha("thresholded_relu", 0.5, [](double v, double a, double) { return v >= a ? v : 0; }),
      with_alpha_beta(
          "clamped_relu", 0.5, 3,
          [](double v, double a, double b) { return std::min(std::max(v, 0.0), b) + std::min(v * a, b) * (v < 0); }),
      with_alpha_beta("linear_activation", -1.5, 0.25, [](double v, double a, double b) { return a * v + b; }),
      with_alpha_beta("scaled_tanh", 1.5, 0.5, [](double v, double a, double b) { return a * std::tanh(b * v); }),
      with_alpha_beta("sigmoid_hard", 0.2, 0.5,
                      [](double v, double a, double b) { return std::min(std::max(a * v + b, 0.0), 1.0); }),
      op("prelu", "alpha per channel of [2, 3, 2]")
          .in("x", F({2, 3, 2}, values_in(12, -4, 4, 21)))
          .konst("alpha", F({3}, {0.5, -1, 2}))
          .reference([](const Inputs& in) {
            Array out = in["x"];
            for (int64_t i = 0; i < out.numel(); ++i)
              if (out.v[i] < 0) out.v[i] *= in["alpha"].v[(i / 2) % 3];
            return std::vector<Array>{out};
          }),
      op("softplus_parametric", "alpha and beta per channel of [1, 3, 4]")
          .in("x", F({1, 3, 4}, values_in(12, -30, 30, 22)))
          .konst("alpha", F({3}, {0.5, 1, 2}))
          .konst("beta", F({3}, {1, -0.5, 3}))
          .reference([](const Inputs& in) {
            Array out = in["x"];
            for (int64_t i = 0; i < out.numel(); ++i) {
              double a = in["alpha"].v[i / 4], b = in["beta"].v[i / 4], t = b * out.v[i];
              out.v[i] = a * (std::max(t, 0.0) + std::log1p(std::exp(-std::abs(t))));
            }
            return std::vector<Array>{out};
          }),
  };
}

[[maybe_unused]] const bool registered =
    add_entries(math()) && add_entries(with_parameters()) && add_entries(activations());

}  // namespace
}  // namespace staticllm::test::optable

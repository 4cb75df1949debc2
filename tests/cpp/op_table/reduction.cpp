// Op-table entries of runtime/mil/ops/reduction.cpp: every reduction over a
// middle axis, the two last axes kept, and all axes (no `axes`), in floats and
// (where integers reduce) int32; arg reductions with ties; softmax over a
// middle and the last axis; topk over a middle axis, with ties, ascending,
// values only and uint16 indices.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "op_table.h"

namespace staticllm::test::optable {
namespace {

using Group = const std::vector<double>&;
using Fold = double (*)(Group);

double sum(Group g) { return std::accumulate(g.begin(), g.end(), 0.0); }
double sum_square(Group g) { return std::inner_product(g.begin(), g.end(), g.begin(), 0.0); }
double log_sum_exp(Group g) {
  double acc = 0;
  for (double v : g) acc += std::exp(v);
  return std::log(acc);
}

struct Axes {
  std::vector<double> axes;  // empty: the parameter is left out (reduce over all)
  bool keep;
  const char* what;
};
const Axes kAxes[] = {{{1}, false, "axis 1"}, {{-1, -2}, true, "axes -1, -2 kept"}, {{}, false, "all axes"}};

Entry reduction(const std::string& type, const Axes& a, Spec x, Fold f) {
  Entry e = op(type, a.what).in("x", std::move(x));
  if (!a.axes.empty()) e.ints("axes", a.axes).flag("keep_dims", a.keep);
  std::vector<int64_t> axes(a.axes.begin(), a.axes.end());
  if (axes.empty()) axes = {0, 1, 2};
  return e.reference([=, keep = a.keep](const Inputs& in) {
    return std::vector<Array>{reduce(in["x"], axes, keep, in["x"].dtype, f)};
  });
}

std::vector<Entry> reductions() {
  const std::vector<std::pair<const char*, Fold>> folds = {
      {"reduce_sum", sum},
      {"reduce_mean", [](Group g) { return sum(g) / static_cast<double>(g.size()); }},
      {"reduce_max", [](Group g) { return *std::max_element(g.begin(), g.end()); }},
      {"reduce_min", [](Group g) { return *std::min_element(g.begin(), g.end()); }},
      {"reduce_prod",
       [](Group g) { return std::accumulate(g.begin(), g.end(), 1.0, [](double a, double b) { return a * b; }); }},
      {"reduce_l2_norm", [](Group g) { return std::sqrt(sum_square(g)); }},
      {"reduce_l1_norm",
       [](Group g) {
         return std::accumulate(g.begin(), g.end(), 0.0, [](double a, double b) { return a + std::abs(b); });
       }},
      {"reduce_sum_square", sum_square},
      {"reduce_log_sum_exp", log_sum_exp},
  };
  std::vector<Entry> out;
  for (const auto& [type, f] : folds) {
    bool prod = std::string(type) == "reduce_prod";
    // products of 24 factors stay near 1 when each is
    Spec x = F({2, 3, 4}, prod ? values_in(24, 0.7, 1.3, 2) : values_in(24, -2, 2, 3));
    for (const Axes& a : kAxes) out.push_back(reduction(type, a, x, f));
  }
  out.push_back(op("reduce_log_sum_exp", "large values, axis 0")
                    .in("x", F({2, 2}, {1000, -1000, 999, -1001}))
                    .ints("axes", {0})
                    .reference([](const Inputs& in) {
                      // log(e^a + e^b) = a + log1p(e^(b - a)) for a >= b; e^1000 has no double
                      auto lse = [](Group g) { return g[0] + std::log1p(std::exp(g[1] - g[0])); };
                      return std::vector<Array>{reduce(in["x"], {0}, false, in["x"].dtype, lse)};
                    }));
  for (const char* type : {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod"}) {
    for (const auto& [name, f] : folds) {
      if (name != std::string(type)) continue;
      Entry e =
          reduction(type, kAxes[0],
                    I32({2, 3, 4}, {1, -2, 3, 0, 5, 2, -1, 1, 2, 2, -3, 1, 4, 1, 0, -2, 1, 1, 3, -1, 2, 1, 1, 2}), f);
      e.what += ", int32";
      out.push_back(e);
    }
  }
  return out;
}

// Index of the first best element, as numpy's argmax/argmin.
double arg_best(Group g, bool max) {
  auto it = max ? std::max_element(g.begin(), g.end()) : std::min_element(g.begin(), g.end());
  return static_cast<double>(it - g.begin());
}

std::vector<Entry> arg_reductions() {
  std::vector<Entry> out;
  for (bool max : {true, false}) {
    std::string type = max ? "reduce_argmax" : "reduce_argmin";
    Spec x = F({2, 3, 4}, values_in(24, -2, 2, 4));
    for (int64_t axis : {1, -1}) {
      out.push_back(
          op(type, "axis " + std::to_string(axis)).in("x", x).scalar_int("axis", axis).reference([=](const Inputs& in) {
            auto f = [max](Group g) { return arg_best(g, max); };
            return std::vector<Array>{reduce(in["x"], {axis}, false, DType::kInt32, f)};
          }));
    }
    out.push_back(op(type, "first of equal values, axis defaults to -1")
                      .in("x", F({2, 3}, {1, 3, 3, -2, -1, -2}))
                      .expect({I32({2}, {max ? 1.0 : 0.0, max ? 1.0 : 0.0})}));
    out.push_back(op(type, "uint16 indices (iOS17 output_dtype)")
                      .in("x", F({2, 3}, {1, 3, 2, -2, -1, -3}))
                      .scalar_int("axis", 1)
                      .string("output_dtype", "uint16")
                      .expect({Typed(DType::kUInt16, {2}, {max ? 1.0 : 0.0, max ? 1.0 : 2.0})}));
    out.push_back(op(type, "int32 keep_dims")
                      .in("x", I32({2, 3}, {4, -1, 4, 0, 7, -3}))
                      .scalar_int("axis", 1)
                      .flag("keep_dims", true)
                      .expect({I32({2, 1}, {max ? 0.0 : 1.0, max ? 1.0 : 2.0})}));
  }
  return out;
}

// softmax along `axis` of x, in double.
Array softmax(const Array& x, int64_t axis) {
  int64_t rank = static_cast<int64_t>(x.shape.size());
  if (axis < 0) axis += rank;
  int64_t outer = 1, n = x.shape[axis], inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.shape[d];
  for (int64_t d = axis + 1; d < rank; ++d) inner *= x.shape[d];
  Array out = x;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      double total = 0;
      for (int64_t k = 0; k < n; ++k) total += std::exp(x.v[(o * n + k) * inner + i]);
      for (int64_t k = 0; k < n; ++k) out.v[(o * n + k) * inner + i] = std::exp(x.v[(o * n + k) * inner + i]) / total;
    }
  }
  return out;
}

std::vector<Entry> softmaxes() {
  Spec x = F({2, 3, 4}, values_in(24, -6, 6, 5));
  return {
      op("softmax", "axis 1").in("x", x).scalar_int("axis", 1).reference([](const Inputs& in) {
        return std::vector<Array>{softmax(in["x"], 1)};
      }),
      op("softmax", "axis defaults to -1").in("x", x).reference([](const Inputs& in) {
        return std::vector<Array>{softmax(in["x"], -1)};
      }),
      op("softmax", "[8, 4096], rows split over the thread pool")
          .in("x", F({8, 4096}, values_in(8 * 4096, -8, 8, 6)))
          .reference([](const Inputs& in) { return std::vector<Array>{softmax(in["x"], -1)}; }),
      op("softmax", "large logits").in("x", F({1, 3}, {1000, 999, -1000})).reference([](const Inputs& in) {
        Array shifted = map(in["x"], [](double v) { return v - 1000; });  // exp(1000) has no double either
        return std::vector<Array>{softmax(shifted, -1)};
      }),
  };
}

std::vector<Entry> scans() {
  Spec x = F({2, 3}, {1, -2, 3, 0.5, 4, -1});
  return {
      op("reduce_log_sum", "axis 1 of positive values")
          .in("x", F({2, 3}, {0.5, 1, 2, 3, 0.25, 4}))
          .ints("axes", {1})
          .reference([](const Inputs& in) {
            return std::vector<Array>{
                reduce(in["x"], {1}, false, in["x"].dtype, [](Group g) { return std::log(sum(g)); })};
          }),
      op("cumsum", "axis 0 by default").in("x", x).expect({F({2, 3}, {1, -2, 3, 1.5, 2, 2})}),
      op("cumsum", "axis 1, exclusive")
          .in("x", x)
          .scalar_int("axis", 1)
          .flag("exclusive", true)
          .expect({F({2, 3}, {0, 1, -1, 0, 0.5, 4.5})}),
      op("cumsum", "axis -1, reverse, int32")
          .in("x", I32({2, 3}, {1, 2, 3, 4, 5, 6}))
          .scalar_int("axis", -1)
          .flag("reverse", true)
          .expect({I32({2, 3}, {6, 5, 3, 15, 11, 6})}),
  };
}

[[maybe_unused]] const bool registered =
    add_entries(reductions()) && add_entries(arg_reductions()) && add_entries(softmaxes()) && add_entries(scans());

}  // namespace
}  // namespace staticllm::test::optable

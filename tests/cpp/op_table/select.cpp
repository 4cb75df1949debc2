// Op-table entries of runtime/mil/ops/select.cpp: select with broadcasting,
// cast between float, int and bool, fill, range_1d, band_part.
#include <cmath>

#include "op_table.h"

namespace staticllm::test::optable {
namespace {

std::vector<Entry> selects() {
  auto pick = [](const Inputs& in) {
    // every operand broadcast to the output shape, then picked elementwise
    Array a = zip(in["a"], in["b"], in["b"].dtype, [](double a, double) { return a; });
    Array c = zip(in["cond"], in["b"], in["b"].dtype, [](double c, double) { return c; });
    Array out = in["b"];
    for (size_t i = 0; i < out.v.size(); ++i) out.v[i] = c.v[i] != 0 ? a.v[i] : out.v[i];
    return std::vector<Array>{out};
  };
  return {
      op("select", "cond [2, 1], a [3], b [2, 3]")
          .in("cond", Bool({2, 1}, {1, 0}))
          .in("a", F({3}, {-1, -2.5, 3}))
          .in("b", F({2, 3}, {10, 20, 30, 40, 50, 60}))
          .reference(pick),
      op("select", "int32 values, int32 condition")
          .in("cond", I32({2, 1}, {0, 7}))
          .in("a", I32({3}, {-1, -2, 3}))
          .in("b", I32({2, 3}, {10, 20, 30, 40, 50, 60}))
          .reference(pick),
  };
}

Entry cast(const std::string& to, Spec x, Spec want) {
  return op("cast", "to " + to).in("x", std::move(x)).string("dtype", to).expect({std::move(want)});
}

std::vector<Entry> casts() {
  Spec x = F({6}, {1.75, -1.75, 0, 2.5, -0.25, 300});
  return {
      cast("int32", x, I32({6}, {1, -1, 0, 2, 0, 300})),  // truncates toward 0
      cast("bool", x, Bool({6}, {1, 1, 0, 1, 1, 1})),
      cast("fp32", x, Typed(DType::kFloat32, {6}, {1.75, -1.75, 0, 2.5, -0.25, 300})),
      cast("fp16", x, Typed(DType::kFloat16, {6}, {1.75, -1.75, 0, 2.5, -0.25, 300})),
      cast("float32", I32({3}, {-7, 0, 16777217}), Typed(DType::kFloat32, {3}, {-7, 0, 16777216})),
      cast("float16", Bool({2}, {1, 0}), Typed(DType::kFloat16, {2}, {1, 0})),
      cast("int32", Bool({2}, {1, 0}), I32({2}, {1, 0})),
      op("cast", "fp32 to fp16")
          .in("x", Typed(DType::kFloat32, {3}, {0.1, 65504, 1.0 / 3}))
          .string("dtype", "fp16")
          .reference([](const Inputs& in) {
            return std::vector<Array>{{DType::kFloat16, {3}, in["x"].v}};
          }),
  };
}

std::vector<Entry> generators() {
  return {
      op("fill", "shape [2, 3] with value")
          .ints("shape", {2, 3})
          .scalar("value", -1.5)
          .expect({F({2, 3}, {-1.5, -1.5, -1.5, -1.5, -1.5, -1.5})}),
      op("fill", "int32 value").ints("shape", {3}).konst("value", I32({}, {7})).expect({I32({3}, {7, 7, 7})}),
      op("fill", "value defaults to 0.0, fp32").ints("shape", {2}).expect({Typed(DType::kFloat32, {2}, {0, 0})}),
      op("range_1d", "float step")
          .scalar("start", -1)
          .scalar("end", 1)
          .scalar("step", 0.5)
          .expect({F({4}, {-1, -0.5, 0, 0.5})}),
      op("range_1d", "int32, negative step")
          .konst("start", I32({}, {5}))
          .konst("end", I32({}, {-2}))
          .konst("step", I32({}, {-3}))
          .expect({I32({3}, {5, 2, -1})}),
      op("range_1d", "empty")
          .konst("start", I32({}, {3}))
          .konst("end", I32({}, {3}))
          .konst("step", I32({}, {1}))
          .expect({I32({0}, {})}),
  };
}

// band_part on [2, 3, 4]: keeps i - j <= lower and j - i <= upper (negative: unbounded).
Entry band(int64_t lower, int64_t upper, bool give) {
  std::vector<double> x(24);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<double>(i) + 1;
  Entry e = op("band_part", give ? "lower " + std::to_string(lower) + ", upper " + std::to_string(upper)
                                 : "lower and upper default to -1 (keep all)")
                .in("x", F({2, 3, 4}, x));
  if (give) e.scalar_int("lower", lower).scalar_int("upper", upper);
  return e.reference([=](const Inputs& in) {
    Array out = in["x"];
    for (int64_t m = 0; m < 2; ++m)
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 4; ++j) {
          bool keep = (lower < 0 || i - j <= lower) && (upper < 0 || j - i <= upper);
          if (!keep) out.v[(m * 3 + i) * 4 + j] = 0;
        }
    return std::vector<Array>{out};
  });
}

std::vector<Entry> bands() { return {band(-1, 0, true), band(0, -1, true), band(1, 2, true), band(-1, -1, false)}; }

std::vector<Entry> from_shapes() {
  return {
      op("fill_like", "the reference's shape, value -2")
          .in("ref_tensor", F({2, 2}, {9, 9, 9, 9}))
          .scalar("value", -2)
          .expect({F({2, 2}, {-2, -2, -2, -2})}),
      op("fill_like", "int32 value")
          .in("ref_tensor", F({3}, {1, 2, 3}))
          .konst("value", I32({}, {4}))
          .expect({I32({3}, {4, 4, 4})}),
      op("one_hot", "last axis, out-of-range index all off")
          .in("indices", I32({3}, {2, 0, 5}))
          .scalar_int("one_hot_vector_size", 3)
          .expect({I32({3, 3}, {0, 0, 1, 1, 0, 0, 0, 0, 0})}),
      op("one_hot", "axis 0, on and off values")
          .in("indices", I32({2}, {1, 0}))
          .scalar_int("one_hot_vector_size", 2)
          .scalar_int("axis", 0)
          .scalar("on_value", 5)
          .scalar("off_value", -1)
          .expect({F({2, 2}, {-1, 5, 5, -1})}),
  };
}

[[maybe_unused]] const bool registered = add_entries(selects()) && add_entries(casts()) && add_entries(generators()) &&
                                         add_entries(bands()) && add_entries(from_shapes());

}  // namespace
}  // namespace staticllm::test::optable

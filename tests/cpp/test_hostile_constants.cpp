// Op builders given constants at the edges of int64 and double, as a corrupt
// or hostile program.json can hold them (the fuzzer's mutator writes such
// values; these were found reviewing the builders it reaches). Each case was
// undefined behaviour (signed overflow, an out-of-range float-to-int cast)
// that UBSan reports; now each is a BundleError or the numpy-style result.
#include <catch2/catch.hpp>

#include <limits>

#include "op_harness.h"

using namespace staticllm;
using namespace staticllm::test;

namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

Tensor i64(Shape shape, std::vector<int64_t> v) {
  Tensor t(DType::kInt64, std::move(shape));
  std::copy(v.begin(), v.end(), t.data_as<int64_t>());
  return t;
}

Tensor scalar(float v) { return f32({}, {v}); }

Tensor x24() { return f32({2, 4}, {0, 1, 2, 3, 4, 5, 6, 7}); }

}  // namespace

TEST_CASE("int64 constants near the limits are read exactly", "[ops][hostile]") {
  // the value went through a double, and 2^63 - 1 rounds to 2^63, which has no int64
  REQUIRE_THROWS_WITH(run_op("reshape", {{"x", {input(x24())}}, {"shape", {constant(i64({2}, {kMax, kMax}))}}}),
                      Catch::Contains("has too many elements"));
  auto r = run_op("reshape", {{"x", {input(x24())}}, {"shape", {constant(i64({2}, {4, -1}))}}});
  REQUIRE(r[0].shape() == Shape{4, 2});
}

TEST_CASE("tile reps whose product overflows are refused", "[ops][hostile]") {
  REQUIRE_THROWS_WITH(run_op("tile", {{"x", {input(x24())}}, {"reps", {constant(i64({2}, {int64_t{1} << 62, 1}))}}}),
                      Catch::Contains("tile reps make the output too large"));
}

TEST_CASE("slice strides longer than the axis take one element", "[ops][hostile]") {
  auto fwd = run_op("slice_by_index", {{"x", {input(x24())}},
                                       {"begin", {constant(i64({2}, {0, 0}))}},
                                       {"end", {constant(i64({2}, {2, 4}))}},
                                       {"stride", {constant(i64({2}, {1, kMax}))}}});
  REQUIRE(fwd[0].shape() == Shape{2, 1});
  REQUIRE(values(fwd[0]) == std::vector<float>{0, 4});
  auto back = run_op("slice_by_index", {{"x", {input(x24())}},
                                        {"begin", {constant(i64({2}, {0, -1}))}},
                                        {"end", {constant(i64({2}, {2, kMin}))}},
                                        {"stride", {constant(i64({2}, {1, kMin}))}}});
  REQUIRE(values(back[0]) == std::vector<float>{3, 7});
}

TEST_CASE("slice_by_size and split sizes at the limits are refused", "[ops][hostile]") {
  for (auto [b, s] : std::vector<std::pair<int64_t, int64_t>>{{kMin, -1}, {int64_t{1} << 62, int64_t{1} << 62}}) {
    REQUIRE_THROWS_WITH(run_op("slice_by_size", {{"x", {input(x24())}},
                                                 {"begin", {constant(i64({2}, {0, b}))}},
                                                 {"size", {constant(i64({2}, {2, s}))}}}),
                        Catch::Contains("out of range for axis 1 of size 4"));
  }
  REQUIRE_THROWS_WITH(run_op("split", {{"x", {input(x24())}},
                                       {"axis", {constant(i64({}, {1}))}},
                                       {"split_sizes", {constant(i64({2}, {kMax, 5}))}}}),
                      Catch::Contains("split size 9223372036854775807 out of range for axis size 4"));
}

TEST_CASE("range_1d with more elements than an int64 holds is refused", "[ops][hostile]") {
  REQUIRE_THROWS_WITH(run_op("range_1d", {{"start", {constant(scalar(0))}},
                                          {"end", {constant(scalar(3e38f))}},
                                          {"step", {constant(scalar(1e-30f))}}}),
                      Catch::Contains("has too many elements"));
  auto none = run_op(
      "range_1d",
      {{"start", {constant(scalar(0))}}, {"end", {constant(scalar(-3e38f))}}, {"step", {constant(scalar(1e-30f))}}});
  REQUIRE(none[0].shape() == Shape{0});
  float nan = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_THROWS_AS(
      run_op("range_1d",
             {{"start", {constant(scalar(0))}}, {"end", {constant(scalar(nan))}}, {"step", {constant(scalar(1))}}}),
      BundleError);
}

// Interpreter ops on known values, fp32 and fp16, including broadcasting,
// negative axes and the errors builders raise.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "op_harness.h"

using namespace staticllm;
using namespace staticllm::test;
using Catch::Detail::Approx;

TEST_CASE("add broadcasts like numpy", "[ops]") {
  auto out =
      run_op("add", {{"x", {input(f32({2, 3}, {1, 2, 3, 4, 5, 6}))}}, {"y", {constant(f32({3}, {10, 20, 30}))}}});
  REQUIRE(out[0].shape() == Shape{2, 3});
  REQUIRE(values(out[0]) == std::vector<float>{11, 22, 33, 14, 25, 36});
  out = run_op("mul", {{"x", {input(f32({2, 1}, {2, 3}))}}, {"y", {input(f32({1, 3}, {1, 2, 3}))}}});
  REQUIRE(values(out[0]) == std::vector<float>{2, 4, 6, 3, 6, 9});
}

TEST_CASE("big elementwise ops split over the pool give every element its value", "[ops]") {
  // [3, 5, 2500] + [5, 1]: 37,500 elements (past the pool threshold), runs of
  // the 2500-long inner dimension cut into blocks with a partial last one, and
  // a broadcast operand whose offset follows the outer index.
  const int64_t A = 3, B = 5, C = 2500;
  std::vector<float> x(A * B * C), y(B);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.001f * static_cast<float>(i % 977) - 0.3f;
  for (int64_t b = 0; b < B; ++b) y[b] = 1.5f * static_cast<float>(b) + 0.25f;
  auto sum = values(run_op("add", {{"x", {input(f32({A, B, C}, x))}}, {"y", {input(f32({B, 1}, y))}}})[0]);
  auto relu = values(run_op("relu", {{"x", {input(f32({A, B, C}, x))}}})[0]);
  for (int64_t i = 0; i < A * B * C; ++i) {
    INFO("element " << i);
    REQUIRE(sum[i] == x[i] + y[(i / C) % B]);
    REQUIRE(relu[i] == std::max(x[i], 0.f));
  }
}

TEST_CASE("fp16 stays fp16 and rounds once", "[ops]") {
  auto out = run_op("sub", {{"x", {input(f16({3}, {1.5f, -2.f, 1000.f}))}}, {"y", {constant(f16({1}, {0.25f}))}}});
  REQUIRE(out[0].dtype() == DType::kFloat16);
  // 999.75 lies halfway between fp16 neighbours 999.5 and 1000: ties go to even.
  REQUIRE(values(out[0]) == std::vector<float>{1.25f, -2.25f, 1000.f});
}

TEST_CASE("comparisons produce bool, select picks by condition", "[ops]") {
  auto cmp = run_op("greater_equal", {{"x", {input(i32({4}, {0, 1, 2, 3}))}}, {"y", {constant(i32({}, {2}))}}});
  REQUIRE(cmp[0].dtype() == DType::kBool);
  REQUIRE(values(cmp[0]) == std::vector<float>{0, 0, 1, 1});
  auto sel = run_op(
      "select", {{"cond", {input(cmp[0])}}, {"a", {constant(f32({1}, {-1}))}}, {"b", {input(f32({4}, {5, 6, 7, 8}))}}});
  REQUIRE(values(sel[0]) == std::vector<float>{5, 6, -1, -1});
}

TEST_CASE("shapes that do not broadcast are rejected at plan time", "[ops]") {
  REQUIRE_THROWS_AS(
      run_op("add", {{"x", {input(f32({2, 3}, std::vector<float>(6)))}}, {"y", {input(f32({2}, {1, 2}))}}}),
      BundleError);
}

TEST_CASE("unary math and activations", "[ops]") {
  auto r = run_op("rsqrt", {{"x", {input(f32({2}, {4, 16}))}}, {"epsilon", {constant(f32({}, {0}))}}});
  REQUIRE(values(r[0])[0] == Approx(0.5f));
  REQUIRE(values(r[0])[1] == Approx(0.25f));
  auto s = run_op("silu", {{"x", {input(f16({2}, {0.f, 2.f}))}}});
  REQUIRE(values(s[0])[1] == Approx(2.f / (1.f + std::exp(-2.f))).epsilon(1e-3));
  auto p = run_op("pow", {{"x", {input(f32({2}, {3, -2}))}}, {"y", {constant(f32({}, {2}))}}});
  REQUIRE(values(p[0]) == std::vector<float>{9, 4});
}

TEST_CASE("reduce_mean and softmax over the last axis", "[ops]") {
  auto m = run_op("reduce_mean", {{"x", {input(f32({2, 2}, {1, 3, 5, 7}))}},
                                  {"axes", {constant(i32({1}, {-1}))}},
                                  {"keep_dims", {constant(boolean({}, {1}))}}});
  REQUIRE(m[0].shape() == Shape{2, 1});
  REQUIRE(values(m[0]) == std::vector<float>{2, 6});
  auto sm =
      run_op("softmax", {{"x", {input(f16({1, 3}, {0, 0, std::log(2.f)}))}}, {"axis", {constant(i32({}, {-1}))}}});
  REQUIRE(values(sm[0])[2] == Approx(0.5f).epsilon(1e-3));
  REQUIRE_THROWS_AS(run_op("softmax", {{"x", {input(f32({2}, {1, 2}))}}, {"axis", {constant(i32({}, {3}))}}}),
                    BundleError);
}

TEST_CASE("transpose, reshape, squeeze, expand_dims, tile", "[ops]") {
  auto t =
      run_op("transpose", {{"x", {input(f32({2, 3}, {1, 2, 3, 4, 5, 6}))}}, {"perm", {constant(i32({2}, {1, 0}))}}});
  REQUIRE(t[0].shape() == Shape{3, 2});
  REQUIRE(values(t[0]) == std::vector<float>{1, 4, 2, 5, 3, 6});
  auto r = run_op("reshape", {{"x", {input(t[0])}}, {"shape", {constant(i32({2}, {-1, 3}))}}});
  REQUIRE(r[0].shape() == Shape{2, 3});
  auto e = run_op("expand_dims", {{"x", {input(r[0])}}, {"axes", {constant(i32({1}, {0}))}}});
  REQUIRE(e[0].shape() == Shape{1, 2, 3});
  auto s = run_op("squeeze", {{"x", {input(e[0])}}, {"axes", {constant(i32({1}, {0}))}}});
  REQUIRE(s[0].shape() == Shape{2, 3});
  auto tl = run_op("tile", {{"x", {input(f32({1, 2}, {7, 8}))}}, {"reps", {constant(i32({2}, {2, 2}))}}});
  REQUIRE(values(tl[0]) == std::vector<float>{7, 8, 7, 8, 7, 8, 7, 8});
  REQUIRE_THROWS_AS(run_op("reshape", {{"x", {input(t[0])}}, {"shape", {constant(i32({1}, {5}))}}}), BundleError);
}

TEST_CASE("slices, concat, split", "[ops]") {
  auto x = f32({2, 4}, {0, 1, 2, 3, 4, 5, 6, 7});
  auto s = run_op("slice_by_index", {{"x", {input(x)}},
                                     {"begin", {constant(i32({2}, {0, 1}))}},
                                     {"end", {constant(i32({2}, {2, -1}))}},
                                     {"stride", {constant(i32({2}, {1, 1}))}}});
  REQUIRE(values(s[0]) == std::vector<float>{1, 2, 5, 6});
  auto z =
      run_op("slice_by_size",
             {{"x", {input(x)}}, {"begin", {constant(i32({2}, {1, 2}))}}, {"size", {constant(i32({2}, {1, -1}))}}});
  REQUIRE(values(z[0]) == std::vector<float>{6, 7});
  auto c = run_op("concat", {{"values", {input(f32({1, 2}, {1, 2})), input(f32({1, 1}, {3}))}},
                             {"axis", {constant(i32({}, {-1}))}}});
  REQUIRE(values(c[0]) == std::vector<float>{1, 2, 3});
  auto sp = run_op(
      "split", {{"x", {input(x)}}, {"axis", {constant(i32({}, {1}))}}, {"split_sizes", {constant(i32({2}, {1, 3}))}}});
  REQUIRE(values(sp[1]) == std::vector<float>{1, 2, 3, 5, 6, 7});
}

TEST_CASE("gather checks indices at run time", "[ops]") {
  auto table = f32({3, 2}, {0, 1, 10, 11, 20, 21});
  auto g =
      run_op("gather",
             {{"x", {constant(table)}}, {"indices", {input(i32({2}, {2, -3}))}}, {"axis", {constant(i32({}, {0}))}}});
  REQUIRE(values(g[0]) == std::vector<float>{20, 21, 0, 1});
  REQUIRE_THROWS_WITH(run_op("gather", {{"x", {constant(table)}}, {"indices", {input(i32({1}, {3}))}}}),
                      Catch::Contains("index 3 out of range for axis of size 3"));
}

TEST_CASE("cast between float, int and bool", "[ops]") {
  auto c = run_op("cast", {{"x", {input(f32({3}, {1.7f, -1.7f, 0.f}))}}, {"dtype", {str("int32")}}});
  REQUIRE(c[0].dtype() == DType::kInt32);
  REQUIRE(values(c[0]) == std::vector<float>{1, -1, 0});
  auto h = run_op("cast", {{"x", {input(f32({1}, {0.1f}))}}, {"dtype", {str("fp16")}}});
  REQUIRE(values(h[0])[0] == Approx(0.1f).epsilon(1e-3));
}

TEST_CASE("linear and matmul match hand-computed products", "[ops]") {
  auto w = f32({2, 3}, {1, 0, -1, 2, 1, 0});
  auto y = run_op("linear", {{"x", {input(f32({1, 3}, {1, 2, 3}))}},
                             {"weight", {constant(w)}},
                             {"bias", {constant(f32({2}, {0.5f, -0.5f}))}}});
  REQUIRE(values(y[0]) == std::vector<float>{-1.5f, 3.5f});
  auto yh = run_op("linear",
                   {{"x", {input(f16({1, 3}, {1, 2, 3}))}}, {"weight", {constant(f16({2, 3}, {1, 0, -1, 2, 1, 0}))}}});
  REQUIRE(values(yh[0]) == std::vector<float>{-2.f, 4.f});
  auto m = run_op("matmul", {{"x", {input(f32({2, 1, 2}, {1, 2, 3, 4}))}},
                             {"y", {input(f32({2, 2}, {1, 0, 0, 1}))}},
                             {"transpose_y", {constant(boolean({}, {1}))}}});
  REQUIRE(m[0].shape() == Shape{2, 1, 2});
  REQUIRE(values(m[0]) == std::vector<float>{1, 2, 3, 4});
  REQUIRE_THROWS_AS(run_op("matmul", {{"x", {input(f32({2, 3}, std::vector<float>(6)))}},
                                      {"y", {input(f32({2, 3}, std::vector<float>(6)))}}}),
                    BundleError);
}

TEST_CASE("blockwise shift-scale dequantizes per block", "[ops]") {
  Tensor q(DType::kInt8, {2, 4});
  int8_t qv[8] = {1, 2, 3, 4, -1, -2, -3, -4};
  std::copy(qv, qv + 8, q.data_as<int8_t>());
  auto d = run_op("constexpr_blockwise_shift_scale",
                  {{"data", {constant(q)}}, {"scale", {constant(f32({2, 2}, {1, 10, 2, 20}))}}});
  REQUIRE(values(d[0]) == std::vector<float>{1, 2, 30, 40, -2, -4, -60, -80});
}

TEST_CASE("float parameters are read from fp16 constants too", "[ops]") {
  auto r = run_op("rsqrt", {{"x", {input(f16({2}, {4, 16}))}}, {"epsilon", {constant(f16({}, {12}))}}});
  REQUIRE(values(r[0])[0] == Approx(0.25f).epsilon(1e-3));
  REQUIRE(values(r[0])[1] == Approx(1 / std::sqrt(28.f)).epsilon(1e-3));
}

TEST_CASE("scatters check every index before writing; iOS17 refuses negative indices", "[ops]") {
  auto data = f32({2, 2}, {1, 2, 3, 4});
  auto upd = f32({2, 2}, {5, 6, 7, 8});
  auto scatter = [&](const std::vector<int32_t>& idx, int opset) {
    return run_op("scatter",
                  {{"data", {input(data)}},
                   {"indices", {input(i32({2}, idx))}},
                   {"updates", {input(upd)}},
                   {"mode", {str("update")}}},
                  {}, opset);
  };
  REQUIRE(values(scatter({-1, 0}, 16)[0]) == std::vector<float>{7, 8, 5, 6});
  REQUIRE_THROWS_WITH(scatter({-1, 0}, 17), Catch::Contains("iOS17 ops take no negative indices"));
  REQUIRE_THROWS_AS(scatter({0, 2}, 16), InputError);
  REQUIRE_THROWS_WITH(
      run_op("scatter_nd",
             {{"data", {input(data)}}, {"indices", {input(i32({1, 2}, {1, 5}))}}, {"updates", {input(f32({1}, {9}))}}}),
      Catch::Contains("index 5 out of range for axis of size 2"));
  REQUIRE_THROWS_AS(run_op("gather_nd", {{"x", {input(data)}}, {"indices", {input(i32({1, 2}, {2, 0}))}}}), InputError);
}

TEST_CASE("slices with run-time begin and end must select the planned lengths", "[ops]") {
  auto x = f32({2, 4}, {0, 1, 2, 3, 4, 5, 6, 7});
  auto update_row = [&](const std::vector<int32_t>& begin, const std::vector<int32_t>& end) {
    return run_op("slice_update", {{"x", {input(x)}},
                                   {"update", {input(f32({1, 2}, {-1, -2}))}},
                                   {"begin", {input(i32({2}, begin))}},
                                   {"end", {input(i32({2}, end))}}});
  };
  REQUIRE(values(update_row({1, 2}, {2, 4})[0]) == std::vector<float>{0, 1, 2, 3, 4, 5, -1, -2});
  REQUIRE_THROWS_WITH(update_row({1, 3}, {2, 9}),
                      Catch::Contains("select 1 elements, the program expects 2"));  // clamped at the axis end
  REQUIRE_THROWS_AS(
      run_op("slice_by_size",
             {{"x", {input(x)}}, {"begin", {input(i32({2}, {0, 3}))}}, {"size", {constant(i32({2}, {1, 2}))}}}),
      InputError);
}

TEST_CASE("sparse decompression checks the nonzero count against the mask", "[ops]") {
  REQUIRE_THROWS_WITH(
      run_op("constexpr_sparse_to_dense", {{"mask", {constant(tensor_of(DType::kUInt8, {3}, {1, 0, 1}))}},
                                           {"nonzero_data", {constant(f32({3}, {1, 2, 3}))}}}),
      Catch::Contains("the mask sets 2 elements but there are 3 nonzero values"));
  REQUIRE_THROWS_AS(run_op("topk", {{"x", {input(f32({3}, {1, 2, 3}))}}, {"k", {constant(i32({}, {4}))}}}),
                    BundleError);
}

TEST_CASE("reshape's 0 copies the input dim by position before iOS17 and from the right from iOS17", "[ops]") {
  auto x = f32({2, 5}, std::vector<float>(10, 1));
  auto shape = constant(i32({4}, {1, 0, -1, 0}));
  REQUIRE(run_op("reshape", {{"x", {input(x)}}, {"shape", {shape}}}, {}, 17)[0].shape() == Shape{1, 1, 2, 5});
  REQUIRE_THROWS_AS(run_op("reshape", {{"x", {input(x)}}, {"shape", {shape}}}, {}, 16), BundleError);
  auto same_rank = constant(i32({2}, {0, -1}));
  REQUIRE(run_op("reshape", {{"x", {input(x)}}, {"shape", {same_rank}}}, {}, 16)[0].shape() == Shape{2, 5});
}

TEST_CASE("rearranging ops refuse lengths and pads outside their axes", "[ops]") {
  REQUIRE_THROWS_WITH(run_op("reverse_sequence", {{"x", {input(f32({2, 3}, std::vector<float>(6)))}},
                                                  {"lengths", {input(i32({2}, {1, 4}))}},
                                                  {"seq_axis", {constant(i32({}, {1}))}}}),
                      Catch::Contains("length 4 out of range [0, 3]"));
  REQUIRE_THROWS_AS(
      run_op("pad",
             {{"x", {input(f32({3}, {1, 2, 3}))}}, {"pad", {constant(i32({2}, {3, 0}))}}, {"mode", {str("reflect")}}}),
      BundleError);
}

TEST_CASE("conv and conv_transpose refuse what they do not run, naming the attribute and its value", "[ops]") {
  using Params = std::map<std::string, std::vector<Arg>>;
  auto conv = [](Shape x, Shape w, Params extra, const std::string& type = "conv") {
    Params p = {{"x", {input(f32(x, std::vector<float>(static_cast<size_t>(shape_numel(x)))))}},
                {"weight", {constant(f32(w, std::vector<float>(static_cast<size_t>(shape_numel(w)))))}}};
    for (auto& [k, v] : extra) p[k] = v;
    return run_op(type, p);
  };
  auto ints = [](std::vector<int32_t> v) {
    return std::vector<Arg>{constant(i32({static_cast<int64_t>(v.size())}, v))};
  };
  REQUIRE_THROWS_WITH(conv({1, 2, 5}, {3, 2, 2}, {{"pad_type", {str("reflect")}}}),
                      Catch::Contains("pad_type 'reflect' is not supported (valid, same, same_lower, custom)"));
  REQUIRE_THROWS_WITH(conv({1, 2, 5}, {3, 2, 2}, {{"pad_type", {str("custom")}}, {"pad", ints({1, 1, 1})}}),
                      Catch::Contains("pad [1, 1, 1] must have two values per spatial dimension (2)"));
  REQUIRE_THROWS_WITH(conv({1, 2, 5}, {3, 2, 2}, {{"pad_type", {str("custom")}}, {"pad", ints({-1, 0})}}),
                      Catch::Contains("pad [-1, 0] is not supported: values must be >= 0"));
  REQUIRE_THROWS_WITH(conv({1, 2, 5, 5}, {3, 2, 2, 2}, {{"strides", ints({1, 0})}}),
                      Catch::Contains("strides [1, 0] is not supported: values must be >= 1"));
  REQUIRE_THROWS_WITH(conv({1, 2, 5, 5}, {3, 2, 2, 2}, {{"dilations", ints({2})}}),
                      Catch::Contains("dilations [2] must have one value per spatial dimension (2)"));
  REQUIRE_THROWS_WITH(conv({1, 4, 5}, {3, 2, 2}, {{"groups", {constant(i32({}, {3}))}}}),
                      Catch::Contains("groups 3 is not supported: it must divide the 4 input channels"));
  REQUIRE_THROWS_WITH(conv({1, 4, 5}, {3, 2, 2}, {{"groups", {constant(i32({}, {2}))}}}),
                      Catch::Contains("groups 2 does not divide the 3 output channels"));
  REQUIRE_THROWS_WITH(conv({1, 2, 5}, {3, 2, 3}, {{"dilations", ints({3})}}),
                      Catch::Contains("the dilated kernel (7) is larger than the padded input (5)"));
  REQUIRE_THROWS_WITH(conv({1, 2, 2, 2, 2, 2}, {3, 2, 1, 1, 1, 1}, {}),
                      Catch::Contains("is not supported: rank 3, 4 or 5"));
  REQUIRE_THROWS_WITH(conv({1, 2, 5}, {3, 2, 2}, {{"bias", {constant(f32({2}, {0, 0}))}}}),
                      Catch::Contains("bias [2] (fp32) must hold the 3 output channels"));
  REQUIRE_THROWS_WITH(
      conv({1, 2, 5}, {2, 3, 2}, {{"pad_type", {str("same_lower")}}}, "conv_transpose"),
      Catch::Contains("pad_type 'same_lower' is not supported for conv_transpose (valid, same, custom)"));
  REQUIRE_THROWS_WITH(conv({1, 2, 5}, {2, 3, 2}, {{"output_shape", ints({1, 4, 9})}}, "conv_transpose"),
                      Catch::Contains("output_shape [1, 4, 9] is not supported: it must be [1, 3, 1 positive"));
  REQUIRE_THROWS_WITH(
      conv({1, 2, 2}, {2, 3, 2}, {{"pad_type", {str("custom")}}, {"pad", ints({2, 2})}}, "conv_transpose"),
      Catch::Contains("pad [2, 2] crops all of spatial dimension 0 (3 long)"));
}

TEST_CASE("crop_resize before iOS16 refuses a sample point outside the input; from iOS16 pads it", "[ops]") {
  auto crop = [](int opset) {
    return run_op("crop_resize",
                  {{"x", {input(f32({1, 1, 2, 2}, {1, 2, 3, 4}))}},
                   {"roi", {constant(f32({1, 1, 4, 1, 1}, {0, 0, 3, 1}))}},
                   {"target_height", {constant(i32({}, {2}))}},
                   {"target_width", {constant(i32({}, {1}))}},
                   {"sampling_mode", {str("STRICT_ALIGN_CORNERS")}}},
                  {}, opset);
  };
  REQUIRE_THROWS_WITH(crop(15),
                      Catch::Contains("lies outside the input, which crop_resize before iOS16 does not define"));
  REQUIRE(values(crop(16)[0]) == std::vector<float>{1, 0});
}

TEST_CASE("non_maximum_suppression rejects mismatched shapes and max_boxes below 1", "[ops]") {
  auto nms = [](Shape boxes, Shape scores, int32_t max_boxes) {
    return run_op("non_maximum_suppression", {{"boxes", {input(f32(boxes, std::vector<float>(shape_numel(boxes))))}},
                                              {"scores", {input(f32(scores, std::vector<float>(shape_numel(scores))))}},
                                              {"iou_threshold", {constant(f32({}, {0.5f}))}},
                                              {"score_threshold", {constant(f32({}, {0.f}))}},
                                              {"max_boxes", {constant(i32({}, {max_boxes}))}}});
  };
  REQUIRE(nms({1, 3, 4}, {1, 3, 2}, 2).size() == 4);
  REQUIRE_THROWS_WITH(nms({1, 3, 5}, {1, 3, 2}, 2), Catch::Contains("boxes must hold 4 coordinates per box"));
  REQUIRE_THROWS_WITH(nms({1, 3, 4}, {1, 2, 2}, 2), Catch::Contains("scores must match boxes in batch and box count"));
  REQUIRE_THROWS_WITH(nms({1, 3, 4}, {1, 3, 2}, 0), Catch::Contains("max_boxes must be positive, got 0"));
}

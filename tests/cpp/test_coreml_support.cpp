// Portable decisions of the Core ML manager: compute units, which methods
// this OS's Core ML can run, element type codes and strided layouts.
#include <catch2/catch.hpp>

#include <optional>
#include <vector>

#include "staticllm/coreml_support.h"
#include "staticllm/errors.h"

using namespace staticllm;

TEST_CASE("compute units parse, unknown names are InputErrors", "[coreml]") {
  REQUIRE(parse_compute_units("all") == ComputeUnits::kAll);
  REQUIRE(parse_compute_units("cpu_only") == ComputeUnits::kCpuOnly);
  REQUIRE(parse_compute_units("cpu_and_gpu") == ComputeUnits::kCpuAndGpu);
  REQUIRE(parse_compute_units("cpu_and_ne") == ComputeUnits::kCpuAndNeuralEngine);
  REQUIRE_THROWS_AS(parse_compute_units("gpu"), InputError);
}

TEST_CASE("Core ML element type codes", "[coreml]") {
  REQUIRE(array_code(DType::kFloat16, "x") == 65552);
  REQUIRE(array_code(DType::kFloat32, "x") == 65568);
  REQUIRE(array_code(DType::kFloat64, "x") == 65600);
  REQUIRE(array_code(DType::kInt32, "x") == 131104);
  REQUIRE(array_code(DType::kInt8, "x") == 131080);
  for (DType t : {DType::kFloat16, DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt8}) {
    REQUIRE(dtype_from_array_code(array_code(t, "x")) == std::optional<DType>(t));
  }
  REQUIRE_FALSE(dtype_from_array_code(131136).has_value());  // int64: not a Core ML array type
  REQUIRE_THROWS_WITH(array_code(DType::kBool, "input 'mask'"),
                      "input 'mask': Core ML arrays hold fp16, fp32, fp64, int32 or int8, not bool");
}

TEST_CASE("strided layouts: extent checks and copies", "[coreml]") {
  REQUIRE(dense_strides({2, 3, 4}) == std::vector<int64_t>{12, 4, 1});
  REQUIRE(dense_strides({}).empty());
  REQUIRE(strided_fits({2, 3}, {3, 1}, 6));
  REQUIRE_FALSE(strided_fits({2, 3}, {3, 1}, 5));
  REQUIRE(strided_fits({2, 3}, {4, 1}, 7));       // rows padded to 4, last row unpadded
  REQUIRE_FALSE(strided_fits({2, 3}, {4}, 100));  // rank mismatch
  REQUIRE_FALSE(strided_fits({2, 3}, {-1, 1}, 100));
  REQUIRE_FALSE(strided_fits({3, 2}, {int64_t(1) << 62, 1}, 100));  // would overflow if multiplied
  REQUIRE(strided_fits({0, 5}, {5, 1}, 0));
  REQUIRE(strided_fits({}, {}, 1));
  REQUIRE_FALSE(strided_fits({}, {}, 0));

  // padded source rows (stride 4) into a dense 2x3 buffer, and back
  const float padded[8] = {1, 2, 3, -1, 4, 5, 6, -1};
  float dense[6] = {};
  strided_copy(padded, {4, 1}, dense, dense_strides({2, 3}), {2, 3}, sizeof(float));
  REQUIRE(std::vector<float>(dense, dense + 6) == std::vector<float>{1, 2, 3, 4, 5, 6});
  float back[8] = {0, 0, 0, 9, 0, 0, 0, 9};
  strided_copy(dense, {3, 1}, back, {4, 1}, {2, 3}, sizeof(float));
  REQUIRE(std::vector<float>(back, back + 8) == std::vector<float>{1, 2, 3, 9, 4, 5, 6, 9});

  // a transposed source (inner stride 3, so element by element)
  const uint16_t src[6] = {0, 1, 2, 3, 4, 5};  // 2x3 read as its 3x2 transpose
  uint16_t t[6] = {};
  strided_copy(src, {1, 3}, t, {2, 1}, {3, 2}, sizeof(uint16_t));
  REQUIRE(std::vector<uint16_t>(t, t + 6) == std::vector<uint16_t>{0, 3, 1, 4, 2, 5});
  int32_t one = 0;
  const int32_t seven = 7;
  strided_copy(&seven, {}, &one, {}, {}, sizeof(int32_t));
  REQUIRE(one == 7);
  const int8_t cube[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  int8_t out[8] = {};
  strided_copy(cube, {4, 2, 1}, out, {4, 2, 1}, {2, 2, 2}, 1);
  REQUIRE(std::vector<int8_t>(out, out + 8) == std::vector<int8_t>(cube, cube + 8));
}

TEST_CASE("a layout of many dimensions is copied without an index array", "[coreml]") {
  Shape shape(40, 1);
  shape[3] = 2;
  shape[39] = 3;
  std::vector<int64_t> dense = dense_strides(shape);
  std::vector<int64_t> padded = dense;
  for (size_t d = 0; d < 39; ++d) padded[d] = 8;  // rows padded from 3 to 8 elements
  REQUIRE(strided_fits(shape, padded, 16));
  const int16_t src[6] = {1, 2, 3, 4, 5, 6};
  int16_t dst[16] = {};
  strided_copy(src, dense, dst, padded, shape, sizeof(int16_t));
  REQUIRE(std::vector<int16_t>(dst, dst + 11) == std::vector<int16_t>{1, 2, 3, 0, 0, 0, 0, 0, 4, 5, 6});
}

TEST_CASE("UTF-8 validation", "[coreml]") {
  REQUIRE(is_valid_utf8(""));
  REQUIRE(is_valid_utf8("k_cache_0"));
  REQUIRE(is_valid_utf8("\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));  // é, €, an emoji
  REQUIRE_FALSE(is_valid_utf8("\xff"));
  REQUIRE_FALSE(is_valid_utf8("\xc3"));              // truncated
  REQUIRE_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong '/'
  REQUIRE_FALSE(is_valid_utf8("\xed\xa0\x80"));      // a UTF-16 surrogate
  REQUIRE_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // beyond U+10FFFF
  REQUIRE_FALSE(is_valid_utf8("a\x80"));             // a lone continuation byte
}

namespace {

MethodMetadata one_input_method(DType dtype, const std::string& name = "x") {
  MethodMetadata m;
  m.name = "forward";
  m.function_name = "main";
  TensorSpec s;
  s.name = name;
  s.dtype = dtype;
  s.shape = {1, 4};
  m.inputs = {s};
  s.name = "y";
  s.dtype = DType::kFloat32;
  m.outputs = {s};
  return m;
}

std::string coreml_problem(const ModelMetadata& model, const MethodMetadata& m, const CoreMLFeatures& f) {
  try {
    check_coreml_method(model, m, f);
  } catch (const BundleError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("methods this OS's Core ML cannot run are refused at load, naming the tensor", "[coreml]") {
  CoreMLFeatures all{true, true, true, true};
  CoreMLFeatures macos15 = all;
  macos15.int8_arrays = false;
  ModelMetadata single;
  single.methods = {one_input_method(DType::kInt8)};
  // int8 arrays exist from macOS 26 / iOS 26 only: never handed to an older Core ML as an unknown code
  REQUIRE(coreml_problem(single, single.methods[0], all).empty());
  REQUIRE(coreml_problem(single, single.methods[0], macos15) ==
          "method 'forward': input 'x': it is int8, which Core ML arrays hold only from macOS 26 / iOS 26");
  CoreMLFeatures macos11 = macos15;
  macos11.fp16_arrays = false;
  MethodMetadata half = one_input_method(DType::kFloat16);
  REQUIRE(coreml_problem(single, half, macos15).empty());
  REQUIRE(coreml_problem(single, half, macos11) ==
          "method 'forward': input 'x': it is fp16, which Core ML arrays hold only from macOS 12 / iOS 16");
  MethodMetadata mask = one_input_method(DType::kFloat32);
  mask.outputs[0].dtype = DType::kBool;
  REQUIRE(coreml_problem(single, mask, all) ==
          "method 'forward': output 'y': it is bool, which Core ML arrays cannot hold (they hold fp16, fp32, fp64, "
          "int32 and int8)");
  MethodMetadata bad_name = one_input_method(DType::kFloat32, std::string("x\0y", 3));
  REQUIRE(coreml_problem(single, bad_name, all) ==
          "method 'forward': input 'x\\x00y': its name is not valid UTF-8 text without NUL characters, which Core ML "
          "feature names must be");
  REQUIRE_THAT(coreml_problem(single, one_input_method(DType::kFloat32, "a\xff"), all),
               Catch::StartsWith("method 'forward': input 'a\\xff': its name is not valid UTF-8"));

  MethodMetadata stateful = one_input_method(DType::kFloat32);
  stateful.states = {stateful.outputs[0]};
  CoreMLFeatures macos14 = macos11;
  macos14.fp16_arrays = true;
  macos14.states = macos14.functions = false;
  REQUIRE(coreml_problem(single, stateful, macos14) ==
          "method 'forward' has Core ML states, which need macOS 15 / iOS 18 or later");
  ModelMetadata multi = single;
  multi.multifunction = true;
  REQUIRE(coreml_problem(multi, one_input_method(DType::kFloat32), macos14) ==
          "method 'forward': multifunction packages need macOS 15 / iOS 18 or later");
  REQUIRE(coreml_problem(single, one_input_method(DType::kFloat32), macos14).empty());
}

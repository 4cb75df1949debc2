// Portable decisions of the Core ML manager: compute units and the compiled
// model cache key.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

#include "staticllm/coreml_support.h"
#include "staticllm/errors.h"

using namespace staticllm;
namespace fs = std::filesystem;

TEST_CASE("compute units parse, unknown names are InputErrors", "[coreml]") {
  REQUIRE(parse_compute_units("all") == ComputeUnits::kAll);
  REQUIRE(parse_compute_units("cpu_only") == ComputeUnits::kCpuOnly);
  REQUIRE(parse_compute_units("cpu_and_gpu") == ComputeUnits::kCpuAndGpu);
  REQUIRE(parse_compute_units("cpu_and_ne") == ComputeUnits::kCpuAndNeuralEngine);
  REQUIRE_THROWS_AS(parse_compute_units("gpu"), InputError);
}

TEST_CASE("package key follows the content, not the location", "[coreml]") {
  fs::path root = fs::temp_directory_path() / "staticllm_key_test";
  fs::remove_all(root);
  for (const char* name : {"a.mlpackage", "b.mlpackage"}) {
    fs::create_directories(root / name / "Data/weights");
    std::ofstream(root / name / "Manifest.json") << "{}";
    std::ofstream(root / name / "Data/weights/weight.bin") << "0123456789";
  }
  std::string a = package_content_key((root / "a.mlpackage").string());
  REQUIRE(a.size() == 16);
  REQUIRE(a == package_content_key((root / "b.mlpackage").string()));
  std::ofstream(root / "b.mlpackage/Data/weights/weight.bin") << "0123456788";
  REQUIRE(a != package_content_key((root / "b.mlpackage").string()));
  REQUIRE_THROWS_AS(package_content_key((root / "missing").string()), BundleError);
  REQUIRE(compiled_model_path("/c", a) == "/c/" + a + ".mlmodelc");
  fs::remove_all(root);
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

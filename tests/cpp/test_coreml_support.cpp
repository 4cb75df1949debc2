// Portable decisions of the Core ML manager: compute units and the compiled
// model cache key.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

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

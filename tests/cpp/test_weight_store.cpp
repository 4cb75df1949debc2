// weight.bin validation: header, sentinel, dtype, size and bounds are all
// checked before a tensor views the mapping.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include <unistd.h>

#include "mil/weight_store.h"
#include "staticllm/errors.h"

using namespace staticllm;
using namespace staticllm::mil;

namespace {

// One fp32 blob of 4 floats at record offset 64, data at 128.
std::vector<uint8_t> good_file() {
  std::vector<uint8_t> f(128 + 16, 0);
  uint32_t count = 1, version = 2, sentinel = 0xDEADBEEF, dtype = 2;
  uint64_t size = 16, offset = 128;
  std::memcpy(&f[0], &count, 4);
  std::memcpy(&f[4], &version, 4);
  std::memcpy(&f[64], &sentinel, 4);
  std::memcpy(&f[68], &dtype, 4);
  std::memcpy(&f[72], &size, 8);
  std::memcpy(&f[80], &offset, 8);
  float vals[4] = {1.f, 2.f, 3.f, 4.f};
  std::memcpy(&f[128], vals, 16);
  return f;
}

// A fresh file per call: ctest runs test cases in parallel processes.
std::string write(const std::vector<uint8_t>& bytes) {
  static int counter = 0;
  std::string name = "staticllm_weights_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".bin";
  std::string path = (std::filesystem::temp_directory_path() / name).string();
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return path;
}

const ValueType kFour{DType::kFloat32, {4}};

std::string blob_error(const std::vector<uint8_t>& bytes, uint64_t offset = 64, ValueType type = kFour) {
  try {
    WeightStore::open(write(bytes))->blob(offset, type, 0, "test");
  } catch (const BundleError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a valid blob is viewed in place", "[weights]") {
  auto ws = WeightStore::open(write(good_file()));
  Tensor t = ws->blob(64, kFour, 0, "w");
  REQUIRE(t.data_as<float>()[3] == 4.f);
  REQUIRE(ws->blob_count() == 1);
}

TEST_CASE("weights read into memory do not follow the file", "[weights]") {
  std::string path = write(good_file());
  auto ws = WeightStore::open(path, /*mmap=*/false);
  Tensor t = ws->blob(64, kFour, 0, "w");
  REQUIRE(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);  // data at offset 128 of a 64-byte aligned copy
  std::filesystem::resize_file(path, 0);                     // truncated, then rewritten with other values
  auto other = good_file();
  other[128 + 15] = 0x41;  // 4.0f -> 16.0f
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(other.data()), other.size());
  REQUIRE(t.data_as<float>()[3] == 4.f);
  REQUIRE(ws->blob(64, kFour, 0, "w").data_as<float>()[3] == 4.f);
  REQUIRE(WeightStore::open(path, false)->blob(64, kFour, 0, "w").data_as<float>()[3] != 4.f);
  REQUIRE_THROWS_WITH(WeightStore::open(write({1, 2, 3}), false),
                      Catch::EndsWith("file is 3 bytes, shorter than the 64-byte header"));
}

TEST_CASE("corrupt files are BundleErrors that say what is wrong", "[weights]") {
  auto f = good_file();
  f[4] = 3;  // version 3
  REQUIRE_THROWS_WITH(WeightStore::open(write(f)), Catch::Contains("version 3, expected 2"));
  REQUIRE_THROWS_WITH(WeightStore::open(write(std::vector<uint8_t>(10, 0))),
                      Catch::Contains("shorter than the 64-byte header"));

  f = good_file();
  f[64] = 0;  // sentinel
  REQUIRE_THAT(blob_error(f), Catch::Contains("bad blob sentinel"));

  f = good_file();
  uint64_t past = 4096;
  std::memcpy(&f[80], &past, 8);  // data offset beyond the file
  REQUIRE_THAT(blob_error(f), Catch::Contains("runs past the end"));

  REQUIRE_THAT(blob_error(good_file(), 10000), Catch::Contains("outside the"));
  REQUIRE_THAT(blob_error(good_file(), 64, {DType::kFloat16, {8}}), Catch::Contains("blob holds fp32"));
  REQUIRE_THAT(blob_error(good_file(), 64, {DType::kFloat32, {5}}), Catch::Contains("needs 20"));

  f = good_file();
  uint64_t unaligned = 130;  // fp32 data at an offset no float may be read from
  std::memcpy(&f[80], &unaligned, 8);
  f.resize(130 + 16);
  REQUIRE_THAT(blob_error(f), Catch::Contains("blob data offset 130 is not a multiple of 64"));

  f = good_file();
  f.resize(130);  // truncated data
  REQUIRE_THAT(blob_error(f), Catch::Contains("runs past the end"));
}

TEST_CASE("int4 blobs are unpacked with sign extension", "[weights]") {
  auto f = good_file();
  uint32_t dtype = 8;
  uint64_t size = 2;
  std::memcpy(&f[68], &dtype, 4);
  std::memcpy(&f[72], &size, 8);
  f[128] = 0xF1;              // elements 1, -1 (low nibble first)
  f[129] = 0x7 | (0x8 << 4);  // 7, -8
  Tensor t = WeightStore::open(write(f))->blob(64, {DType::kInt8, {4}}, 4, "q");
  const int8_t* v = t.data_as<int8_t>();
  REQUIRE(std::vector<int>(v, v + 4) == std::vector<int>{1, -1, 7, -8});
}

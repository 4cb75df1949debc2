// Tensor basics: dtype names and sizes, shapes, and the three kinds of storage
// (owning, borrowed view, shared with a keep-alive owner such as a numpy array).
#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>

#include "staticllm/errors.h"
#include "staticllm/tensor.h"

using namespace staticllm;

TEST_CASE("every dtype round-trips through its metadata name", "[tensor]") {
  const DType all[] = {DType::kFloat16, DType::kFloat32, DType::kFloat64, DType::kInt8,  DType::kUInt8,
                       DType::kInt16,   DType::kUInt16,  DType::kInt32,   DType::kInt64, DType::kBool};
  const size_t sizes[] = {2, 4, 8, 1, 1, 2, 2, 4, 8, 1};
  for (size_t i = 0; i < 10; ++i) {
    DType back = DType::kBool;
    REQUIRE(dtype_from_name(dtype_name(all[i]), &back));
    REQUIRE(back == all[i]);
    REQUIRE(dtype_size(all[i]) == sizes[i]);
  }
  REQUIRE(std::string(dtype_name(DType::kFloat16)) == "fp16");
  // one table, in enum order, so dtype_info may index it
  REQUIRE(dtype_table().size() == 10);
  for (size_t i = 0; i < 10; ++i) REQUIRE(dtype_info(all[i]).dtype == all[i]);
  REQUIRE(std::string(dtype_info(DType::kBool).numpy_name) == "bool");
  DType unchanged = DType::kInt32;
  REQUIRE_FALSE(dtype_from_name("float", &unchanged));
  REQUIRE_FALSE(dtype_from_name("FP16", &unchanged));
  REQUIRE(unchanged == DType::kInt32);
}

TEST_CASE("shapes: element count and printing", "[tensor]") {
  REQUIRE(shape_numel({}) == 1);  // a scalar holds one element
  REQUIRE(shape_numel({2, 3, 4}) == 24);
  REQUIRE(shape_numel({5, 0}) == 0);
  REQUIRE(shape_to_string({}) == "[]");
  REQUIRE(shape_to_string({1, 4, 8}) == "[1, 4, 8]");
}

TEST_CASE("owning tensors are zeroed, aligned and shared on copy", "[tensor]") {
  Tensor t(DType::kFloat16, {3, 5});
  REQUIRE(t.rank() == 2);
  REQUIRE(t.numel() == 15);
  REQUIRE(t.nbytes() == 30);
  REQUIRE(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);
  const auto* bytes = t.data_as<uint8_t>();
  for (size_t i = 0; i < t.nbytes(); ++i) REQUIRE(bytes[i] == 0);
  Tensor copy = t;  // copies share storage, like numpy views
  copy.data_as<uint16_t>()[7] = 0x3c00;
  REQUIRE(t.data_as<uint16_t>()[7] == 0x3c00);
  Tensor empty(DType::kInt32, {0, 4});
  REQUIRE(empty.defined());
  REQUIRE(empty.nbytes() == 0);
  REQUIRE_THROWS_AS(Tensor(DType::kFloat32, {2, -1}), StaticLLMError);
}

TEST_CASE("views borrow memory; shared tensors keep their owner alive", "[tensor]") {
  float buf[6] = {1, 2, 3, 4, 5, 6};
  Tensor v = Tensor::view(DType::kFloat32, {2, 3}, buf);
  REQUIRE(v.data() == buf);
  REQUIRE(v.data_as<float>()[4] == 5.0f);

  int released = 0;
  {
    auto owner = std::shared_ptr<void>(new float[4]{7, 8, 9, 10}, [&released](void* p) {
      delete[] static_cast<float*>(p);
      ++released;
    });
    float* data = static_cast<float*>(owner.get()) + 1;
    Tensor s = Tensor::shared(DType::kFloat32, {3}, data, owner);
    owner.reset();
    REQUIRE(released == 0);  // the tensor still holds the owner
    REQUIRE(s.data_as<float>()[0] == 8.0f);
    Tensor again = s;
    s = Tensor();
    REQUIRE(released == 0);
    REQUIRE(again.data_as<float>()[2] == 10.0f);
  }
  REQUIRE(released == 1);  // dropped exactly once, with the last tensor
}

TEST_CASE("a default tensor holds nothing", "[tensor]") {
  Tensor t;
  REQUIRE(t.rank() == 0);
  REQUIRE_FALSE(t.defined());  // a rank-0 tensor has one element but no data
}

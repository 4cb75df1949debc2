// Op-table entries of runtime/mil/ops/sparsity.cpp: the dense result of a
// bit mask (iOS18 one value per element, iOS16 packed bytes), palettized
// nonzero values (scalar and vectors along an axis) and dequantized nonzero
// values per block of the mask.
#include "op_table.h"

namespace staticllm::test::optable {
namespace {

Spec mask(Shape shape, std::vector<double> v) { return Typed(DType::kUInt8, std::move(shape), std::move(v)); }

std::vector<Entry> sparsity_entries() {
  return {
      op("constexpr_sparse_to_dense", "mask of the output shape")
          .konst("mask", mask({2, 3}, {1, 0, 0, 1, 1, 0}))
          .konst("nonzero_data", F({3}, {5, -1, 2}))
          .expect({F({2, 3}, {5, 0, 0, -1, 2, 0})}),
      // bits 0, 2, 3 of 0b01101 set
      op("constexpr_sparse_to_dense", "iOS16 form: packed mask bytes and a shape")
          .konst("mask", mask({1}, {13}))
          .konst("nonzero_data", F({3}, {7, 8, 9}))
          .ints("shape", {5})
          .expect({F({5}, {7, 0, 8, 9, 0})}),
      op("constexpr_lut_to_sparse", "scalar palette")
          .konst("indices_mask", mask({2, 3}, {1, 1, 0, 0, 1, 1}))
          .konst("indices_nonzero_data", Typed(DType::kUInt8, {4}, {0, 1, 1, 0}))
          .konst("lut", F({1, 1, 2, 1}, {2, 3}))
          .expect({mask({2, 3}, {1, 1, 0, 0, 1, 1}), F({4}, {2, 3, 3, 2})}),
      // (0, 0) takes vector 1 = (3, 3.5) down axis 0, (1, 1) vector 0 = (2, 2.5)
      op("constexpr_lut_to_sparse", "vectors of 2 along axis 0")
          .konst("indices_mask", mask({2, 2}, {1, 0, 0, 1}))
          .konst("indices_nonzero_data", Typed(DType::kUInt8, {2}, {1, 0}))
          .konst("lut", F({1, 1, 2, 2}, {2, 2.5, 3, 3.5}))
          .scalar_int("vector_axis", 0)
          .expect({mask({4, 2}, {1, 0, 1, 0, 0, 1, 0, 1}), F({4}, {3, 3.5, 2, 2.5})}),
      op("constexpr_sparse_blockwise_shift_scale", "int8 data, a scale and offset per row")
          .konst("data_mask", mask({2, 2}, {1, 1, 0, 1}))
          .konst("nonzero_data", Typed(DType::kInt8, {3}, {4, -2, 6}))
          .konst("scale", F({2, 1}, {0.5, 2}))
          .konst("offset", Typed(DType::kInt8, {2, 1}, {1, -1}))
          .expect({mask({2, 2}, {1, 1, 0, 1}), F({3}, {1.5, -1.5, 14})}),
  };
}

[[maybe_unused]] const bool registered = add_entries(sparsity_entries());

}  // namespace
}  // namespace staticllm::test::optable

// Op-table entries of runtime/mil/ops/linear.cpp against a double-precision
// matmul: sizes that leave remainders in the gemm kernels' row and column
// blocks, fp16 weights with fp32 activations, every transpose flag.
#include "op_table.h"

namespace staticllm::test::optable {
namespace {

// [rows, cols] of deterministic values in [-1, 1).
Spec mat(Shape shape, uint32_t seed) {
  int64_t n = shape_numel(shape);
  return F(std::move(shape), values_in(n, -1, 1, seed));
}

std::vector<Array> linear_ref(const Inputs& in) {
  Array y = matmul(in["x"], transpose_last2(in["weight"]));
  if (in.has("bias")) y = zip(y, in["bias"], y.dtype, [](double a, double b) { return a + b; });
  y.dtype = in["x"].dtype;
  return {y};
}

std::vector<Entry> linears() {
  return {
      op("linear", "[2, 3, 19] x [13, 19]^T + bias")
          .in("x", mat({2, 3, 19}, 1))
          .konst("weight", mat({13, 19}, 2))
          .konst("bias", mat({13}, 3))
          .reference(linear_ref)
          .tol32(1e-5, 1e-5)
          .tol16(2e-3, 2e-3),
      op("linear", "no bias, one row")
          .in("x", mat({1, 37}, 4))
          .konst("weight", mat({5, 37}, 5))
          .reference(linear_ref)
          .tol32(1e-5, 1e-5)
          .tol16(2e-3, 2e-3),
      op("linear", "[4, 64] x [260, 64]^T, output rows split over the thread pool")
          .in("x", mat({4, 64}, 18))
          .konst("weight", mat({260, 64}, 19))
          .reference(linear_ref)
          .tol32(1e-5, 1e-5)
          .tol16(2e-3, 2e-3),
      op("linear", "fp32 x, fp16 weight")
          .in("x", Typed(DType::kFloat32, {2, 9}, values_in(18, -1, 1, 6)))
          .konst("weight", Typed(DType::kFloat16, {7, 9}, values_in(63, -1, 1, 7)))
          .reference(linear_ref)
          .tol32(1e-5, 1e-5),
  };
}

Entry matmul_entry(const std::string& what, Spec x, Spec y, bool tx, bool ty) {
  return op("matmul", what)
      .in("x", std::move(x))
      .in("y", std::move(y))
      .flag("transpose_x", tx)
      .flag("transpose_y", ty)
      .reference([=](const Inputs& in) {
        Array a = tx ? transpose_last2(in["x"]) : in["x"];
        Array b = ty ? transpose_last2(in["y"]) : in["y"];
        return std::vector<Array>{matmul(a, b)};
      })
      .tol32(1e-5, 1e-5)
      .tol16(2e-3, 2e-3);
}

std::vector<Entry> matmuls() {
  return {
      matmul_entry("[2, 5, 11] x [11, 6], batch broadcast", mat({2, 5, 11}, 8), mat({11, 6}, 9), false, false),
      matmul_entry("transpose_y, [2, 1, 3, 8] x [3, 7, 8]", mat({2, 1, 3, 8}, 10), mat({3, 7, 8}, 11), false, true),
      matmul_entry("transpose_x", mat({2, 9, 4}, 12), mat({2, 9, 5}, 13), true, false),
      matmul_entry("[4, 16, 32] x [4, 32, 40], batches split over the thread pool", mat({4, 16, 32}, 20),
                   mat({4, 32, 40}, 21), false, false),
      matmul_entry("transpose_x and transpose_y", mat({6, 3}, 14), mat({4, 6}, 15), true, true),
      // Decode attention: 3 batches of 3 rows do not split evenly over 2 threads, so each is also cut
      // into column chunks (100 = 64 + 36: a partial row tile).
      matmul_entry("transpose_y, [3, 3, 16] x [3, 100, 16], column chunks", mat({3, 3, 16}, 22), mat({3, 100, 16}, 23),
                   false, true),
      op("matmul", "flags default to false")
          .in("x", mat({3, 2}, 16))
          .in("y", mat({2, 3}, 17))
          .reference([](const Inputs& in) { return std::vector<Array>{matmul(in["x"], in["y"])}; })
          .tol32(1e-5, 1e-5)
          .tol16(2e-3, 2e-3),
  };
}

// iOS17: operands of different dtypes (the result in the declared dtype, that
// of the non-constant operand) and numpy's rank-1 products (linear_mixed.cpp).
std::vector<Entry> mixed_products() {
  Spec x23 = I32({2, 3}, {1, -2, 3, 0, 4, 5});
  Spec w23 = F({2, 3}, {1, 1, -1, 2, 0, 3});
  return {
      op("matmul", "int32 x, float constant y, int32 result")
          .in("x", x23)
          .konst("y", F({3, 2}, {1, 2, 0.5, -1, 3, 0}))
          .declares({Typed(DType::kInt32, {2, 2}, {})})
          .expect({I32({2, 2}, {9, 4, 17, -4})}),
      op("matmul", "vector times matrix")
          .in("x", F({3}, {1, 2, 3}))
          .in("y", F({3, 2}, {1, 0, 0, 1, 1, 1}))
          .expect({F({2}, {4, 5})}),
      op("matmul", "matrix times vector, transpose_x")
          .in("x", F({3, 2}, {1, 0, 0, 1, 1, 1}))
          .in("y", F({3}, {1, 2, 3}))
          .flag("transpose_x", true)
          .expect({F({2}, {4, 5})}),
      op("linear", "int32 x, float weight and bias")
          .in("x", x23)
          .konst("weight", w23)
          .konst("bias", F({2}, {1, -1}))
          .declares({Typed(DType::kInt32, {2, 2}, {})})
          .expect({I32({2, 2}, {-3, 10, 0, 14})}),
  };
}

[[maybe_unused]] const bool registered =
    add_entries(linears()) && add_entries(matmuls()) && add_entries(mixed_products());

}  // namespace
}  // namespace staticllm::test::optable

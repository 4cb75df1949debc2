// Op-table entries of runtime/mil/ops/sort.cpp: argsort and topk along a
// middle and the last axis, both directions, equal values in input order,
// int32 values, k = -1 (everything) and values without indices.
#include <algorithm>
#include <numeric>

#include "op_table.h"

namespace staticllm::test::optable {
namespace {

std::vector<Entry> sort_entries() {
  // [2, 3, 2]: the lines along axis 1 are (3, 1, 1), (-2, 5, 0) in batch 0, (4, 4, 2), (7, -1, 7) in batch 1
  Spec x = F({2, 3, 2}, {3, -2, 1, 5, 1, 0, 4, 7, 4, -1, 2, 7});
  return {
      op("argsort", "descending by default, last axis, ties in input order")
          .in("x", F({2, 4}, {1, 3, 3, 0, -1, 2, -5, 2}))
          .expect({I32({2, 4}, {1, 2, 0, 3, 1, 3, 0, 2})}),
      op("argsort", "ascending along axis 1")
          .in("x", x)
          .scalar_int("axis", 1)
          .flag("ascending", true)
          .expect({I32({2, 3, 2}, {1, 0, 2, 2, 0, 1, 2, 1, 0, 0, 1, 2})}),
      op("argsort", "int32").in("x", I32({4}, {7, -3, 9, 0})).expect({I32({4}, {2, 0, 3, 1})}),
      op("topk", "k 2 along axis 1, descending")
          .in("x", x)
          .scalar_int("k", 2)
          .scalar_int("axis", 1)
          .expect({F({2, 2, 2}, {3, 5, 1, 0, 4, 7, 4, 7}), I32({2, 2, 2}, {0, 1, 1, 2, 0, 0, 1, 2})}),
      op("topk", "k 1 by default, ascending, last axis")
          .in("x", F({2, 3}, {2, -1, 5, 0, 0, -3}))
          .flag("ascending", true)
          .expect({F({2, 1}, {-1, -3}), I32({2, 1}, {1, 2})}),
      op("topk", "k -1 is the whole axis; int32 values")
          .in("x", I32({5}, {4, -2, 9, 4, 0}))
          .scalar_int("k", -1)
          .expect({I32({5}, {9, 4, 4, 0, -2}), I32({5}, {2, 0, 3, 4, 1})}),
      op("topk", "values only (return_indices false)")
          .in("x", F({4}, {0.5, 2, -1, 1.5}))
          .scalar_int("k", 3)
          .flag("return_indices", false)
          .expect({F({3}, {2, 1.5, 0.5})}),
  };
}

// topk along `axis` in double: values (dtype of x) and indices (int32), best
// first, equal values by lower index.
std::vector<Array> topk(const Array& x, int64_t axis, int64_t k, bool ascending) {
  int64_t rank = static_cast<int64_t>(x.shape.size());
  if (axis < 0) axis += rank;
  int64_t outer = 1, n = x.shape[axis], inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.shape[d];
  for (int64_t d = axis + 1; d < rank; ++d) inner *= x.shape[d];
  Shape shape = x.shape;
  shape[axis] = k;
  Array values{x.dtype, shape, std::vector<double>(shape_numel(shape))};
  Array indices{DType::kInt32, shape, std::vector<double>(shape_numel(shape))};
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      std::vector<int64_t> order(n);
      std::iota(order.begin(), order.end(), int64_t{0});
      auto at = [&](int64_t j) { return x.v[(o * n + j) * inner + i]; };
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return ascending ? at(a) < at(b) : at(a) > at(b); });
      for (int64_t j = 0; j < k; ++j) {
        values.v[(o * k + j) * inner + i] = at(order[j]);
        indices.v[(o * k + j) * inner + i] = static_cast<double>(order[j]);
      }
    }
  }
  return {values, indices};
}

// From the Neural Engine branch, which added topk to reduction.cpp at the same
// time as this file's: those rows now check sort.cpp's topk.
std::vector<Entry> topks() {
  Spec x = F({2, 5, 3}, values_in(30, -4, 4, 7));
  return {
      op("topk", "k 2 along axis 1")
          .in("x", x)
          .scalar_int("k", 2)
          .scalar_int("axis", 1)
          .reference([](const Inputs& in) { return topk(in["x"], 1, 2, false); }),
      op("topk", "ascending k 3, last axis by default")
          .in("x", x)
          .scalar_int("k", 3)
          .flag("ascending", true)
          .reference([](const Inputs& in) { return topk(in["x"], -1, 3, true); }),
      op("topk", "equal values: lower index first, k defaults to 1")
          .in("x", F({2, 4}, {1, 3, 3, -2, -1, -2, -1, -3}))
          .expect({F({2, 1}, {3, -1}), I32({2, 1}, {1, 0})}),
      op("topk", "equal values keep index order")
          .in("x", F({1, 4}, {2, 5, 2, 5}))
          .scalar_int("k", 4)
          .expect({F({1, 4}, {5, 5, 2, 2}), I32({1, 4}, {1, 3, 0, 2})}),
      op("topk", "k -1 is every element, int32")
          .in("x", I32({3}, {4, -7, 9}))
          .scalar_int("k", -1)
          .expect({I32({3}, {9, 4, -7}), I32({3}, {2, 0, 1})}),
      op("topk", "values only")
          .in("x", F({3}, {0.5, 2, -1}))
          .scalar_int("k", 2)
          .flag("return_indices", false)
          .expect({F({2}, {2, 0.5})}),
      op("topk", "uint16 indices")
          .in("x", F({4}, {0.25, -1, 3, 2}))
          .scalar_int("k", 2)
          .string("output_indices_dtype", "uint16")
          .expect({F({2}, {3, 2}), Typed(DType::kUInt16, {2}, {2, 3})}),
  };
}

[[maybe_unused]] const bool registered = add_entries(sort_entries()) && add_entries(topks());

}  // namespace
}  // namespace staticllm::test::optable

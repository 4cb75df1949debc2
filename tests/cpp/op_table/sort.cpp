// Op-table entries of runtime/mil/ops/sort.cpp: argsort and topk along a
// middle and the last axis, both directions, equal values in input order,
// int32 values, k = -1 (everything) and values without indices.
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

[[maybe_unused]] const bool registered = add_entries(sort_entries());

}  // namespace
}  // namespace staticllm::test::optable

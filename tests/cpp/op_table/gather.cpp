// Op-table entries of runtime/mil/ops/gather.cpp with literal results: x is
// [2, 4] holding 0..7 (row i, column j holds 4i + j) unless given.
#include "op_table.h"

namespace staticllm::test::optable {
namespace {

Spec x24() { return F({2, 4}, {0, 1, 2, 3, 4, 5, 6, 7}); }

std::vector<Entry> gathers() {
  return {
      op("gather", "axis 0, negative index")
          .in("x", x24())
          .in("indices", I32({3}, {1, -2, 1}))
          .scalar_int("axis", 0)
          .expect({F({3, 4}, {4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7})}),
      op("gather", "axis 1, [2, 1] indices")
          .in("x", x24())
          .in("indices", I32({2, 1}, {3, 0}))
          .scalar_int("axis", 1)
          .expect({F({2, 2, 1}, {3, 0, 7, 4})}),
      op("gather", "int32 table, int8 indices, axis defaults to 0")
          .in("x", I32({3}, {10, 20, 30}))
          .in("indices", Typed(DType::kInt8, {2}, {2, 0}))
          .expect({I32({2}, {30, 10})}),
      op("gather", "batch_dims 1: each batch its own indices")
          .in("x", F({2, 3, 2}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}))
          .in("indices", I32({2, 2}, {2, 0, 1, 1}))
          .scalar_int("axis", 1)
          .scalar_int("batch_dims", 1)
          .expect({F({2, 2, 2}, {4, 5, 0, 1, 8, 9, 8, 9})}),
      op("gather_nd", "full index tuples, one negative")
          .in("x", x24())
          .in("indices", I32({3, 2}, {1, 2, 0, -1, 1, 0}))
          .expect({F({3}, {6, 3, 4})}),
      op("gather_nd", "one index per tuple: rows")
          .in("x", x24())
          .in("indices", I32({2, 1}, {1, 0}))
          .expect({F({2, 4}, {4, 5, 6, 7, 0, 1, 2, 3})}),
      op("gather_nd", "batch_dims 1")
          .in("x", F({2, 3, 2}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}))
          .in("indices", I32({2, 1, 1}, {2, 0}))
          .scalar_int("batch_dims", 1)
          .expect({F({2, 1, 2}, {4, 5, 6, 7})}),
      op("gather_along_axis", "axis 1")
          .in("x", x24())
          .in("indices", I32({2, 3}, {3, 0, -1, 1, 1, 2}))
          .scalar_int("axis", 1)
          .expect({F({2, 3}, {3, 0, 3, 5, 5, 6})}),
      op("gather_along_axis", "axis 0, default")
          .in("x", x24())
          .in("indices", I32({1, 4}, {1, 0, 1, 0}))
          .expect({F({1, 4}, {4, 1, 6, 3})}),
  };
}

[[maybe_unused]] const bool registered = add_entries(gathers());

}  // namespace
}  // namespace staticllm::test::optable

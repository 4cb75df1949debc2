// Op-table entries of runtime/mil/ops/slicing.cpp with literal results:
// x is [2, 4] holding 0..7 (row i, column j holds 4i + j).
#include "op_table.h"

namespace staticllm::test::optable {
namespace {

Spec x24() { return F({2, 4}, {0, 1, 2, 3, 4, 5, 6, 7}); }

std::vector<Entry> slices() {
  return {
      op("slice_by_index", "negative end")
          .in("x", x24())
          .ints("begin", {0, 1})
          .ints("end", {2, -1})
          .ints("stride", {1, 1})
          .expect({F({2, 2}, {1, 2, 5, 6})}),
      op("slice_by_index", "negative strides")
          .in("x", x24())
          .ints("begin", {1, 3})
          .ints("end", {0, 0})
          .ints("stride", {-1, -2})
          .expect({F({1, 2}, {7, 5})}),
      op("slice_by_index", "begin/end masks and a squeezed axis")
          .in("x", x24())
          .ints("begin", {1, 9})
          .ints("end", {0, 2})
          .ints("stride", {1, 1})
          .konst("begin_mask", Bool({2}, {0, 1}))
          .konst("end_mask", Bool({2}, {0, 0}))
          .konst("squeeze_mask", Bool({2}, {1, 0}))
          .expect({F({2}, {4, 5})}),
      op("slice_by_index", "int32, stride 2")
          .in("x", I32({2, 4}, {0, 1, 2, 3, 4, 5, 6, 7}))
          .ints("begin", {0, 0})
          .ints("end", {2, 4})
          .ints("stride", {1, 2})
          .expect({I32({2, 2}, {0, 2, 4, 6})}),
      op("slice_by_size", "size -1 to the end")
          .in("x", x24())
          .ints("begin", {1, 2})
          .ints("size", {1, -1})
          .expect({F({1, 2}, {6, 7})}),
      op("slice_by_size", "negative begin")
          .in("x", x24())
          .ints("begin", {0, -3})
          .ints("size", {2, 2})
          .expect({F({2, 2}, {1, 2, 5, 6})}),
  };
}

std::vector<Entry> joins() {
  return {
      op("concat", "last axis, three values")
          .in("values", F({2, 1}, {0, 1}))
          .in("values", F({2, 2}, {2, 3, 4, 5}))
          .in("values", F({2, 1}, {6, 7}))
          .scalar_int("axis", -1)
          .expect({F({2, 4}, {0, 2, 3, 6, 1, 4, 5, 7})}),
      op("concat", "axis 0, int32")
          .in("values", I32({1, 2}, {1, 2}))
          .in("values", I32({2, 2}, {3, 4, 5, 6}))
          .scalar_int("axis", 0)
          .expect({I32({3, 2}, {1, 2, 3, 4, 5, 6})}),
      op("concat", "rank-0 values are one element each (a shape vector from scalars)")
          .in("values", I32({}, {7}))
          .in("values", I32({2}, {8, 9}))
          .in("values", I32({}, {10}))
          .scalar_int("axis", 0)
          .expect({I32({4}, {7, 8, 9, 10})}),
      op("stack", "axis 0")
          .in("values", F({2}, {1, 2}))
          .in("values", F({2}, {3, 4}))
          .scalar_int("axis", 0)
          .expect({F({2, 2}, {1, 2, 3, 4})}),
      op("stack", "last axis")
          .in("values", F({2}, {1, 2}))
          .in("values", F({2}, {3, 4}))
          .in("values", F({2}, {5, 6}))
          .scalar_int("axis", -1)
          .expect({F({2, 3}, {1, 3, 5, 2, 4, 6})}),
      op("split", "split_sizes on the last axis")
          .in("x", x24())
          .scalar_int("axis", -1)
          .ints("split_sizes", {1, 3})
          .expect({F({2, 1}, {0, 4}), F({2, 3}, {1, 2, 3, 5, 6, 7})}),
      op("split", "num_splits on axis 0, int32")
          .in("x", I32({2, 4}, {0, 1, 2, 3, 4, 5, 6, 7}))
          .scalar_int("axis", 0)
          .scalar_int("num_splits", 2)
          .expect({I32({1, 4}, {0, 1, 2, 3}), I32({1, 4}, {4, 5, 6, 7})}),
  };
}

// begin / end as run-time inputs; the program declares the slice's shape
std::vector<Entry> runtime_slices() {
  return {
      op("slice_by_index", "run-time begin and end, negative end, squeezed axis 0")
          .in("x", x24())
          .in("begin", I32({2}, {1, 1}))
          .in("end", I32({2}, {2, -1}))
          .konst("squeeze_mask", Bool({2}, {1, 0}))
          .declares({F({2}, {})})
          .expect({F({2}, {5, 6})}),
      op("slice_by_size", "run-time begin")
          .in("x", x24())
          .in("begin", I32({2}, {1, -3}))
          .ints("size", {1, 2})
          .expect({F({1, 2}, {5, 6})}),
      op("slice_update", "constant begin and end, stride 2")
          .in("x", x24())
          .in("update", F({2, 2}, {-1, -2, -3, -4}))
          .ints("begin", {0, 0})
          .ints("end", {2, 4})
          .ints("stride", {1, 2})
          .expect({F({2, 4}, {-1, 1, -2, 3, -3, 5, -4, 7})}),
      op("slice_update", "run-time begin and end (a cache row), squeezed axis")
          .in("x", x24())
          .in("update", F({3}, {10, 20, 30}))
          .in("begin", I32({2}, {1, 1}))
          .in("end", I32({2}, {2, 4}))
          .konst("squeeze_mask", Bool({2}, {1, 0}))
          .expect({F({2, 4}, {0, 1, 2, 3, 4, 10, 20, 30})}),
      op("concat", "interleave along axis 1")
          .in("values", x24())
          .in("values", F({2, 4}, {10, 11, 12, 13, 14, 15, 16, 17}))
          .scalar_int("axis", 1)
          .flag("interleave", true)
          .expect({F({2, 8}, {0, 10, 1, 11, 2, 12, 3, 13, 4, 14, 5, 15, 6, 16, 7, 17})}),
  };
}

[[maybe_unused]] const bool registered = add_entries(slices()) && add_entries(joins()) && add_entries(runtime_slices());

}  // namespace
}  // namespace staticllm::test::optable

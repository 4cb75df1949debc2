// Op-table entries of runtime/mil/ops/scatter.cpp: each scatter along the
// first and a later axis, several modes (the default "add" included), a
// negative index, int32 data, and slices addressed by index tuples.
#include "op_table.h"

namespace staticllm::test::optable {
namespace {

Spec data23() { return F({2, 3}, {1, 2, 3, 4, 5, 6}); }

std::vector<Entry> scatter_entries() {
  return {
      op("scatter", "update rows")
          .in("data", data23())
          .in("indices", I32({2}, {1, 0}))
          .in("updates", F({2, 3}, {5, 6, 7, 8, 9, 10}))
          .string("mode", "update")
          .expect({F({2, 3}, {8, 9, 10, 5, 6, 7})}),
      op("scatter", "add by default")
          .in("data", data23())
          .in("indices", I32({2}, {1, 0}))
          .in("updates", F({2, 3}, {5, 6, 7, 8, 9, 10}))
          .expect({F({2, 3}, {9, 11, 13, 9, 11, 13})}),
      op("scatter", "mul along axis 1, a negative index")
          .in("data", data23())
          .in("indices", I32({2}, {-1, 0}))
          .in("updates", F({2, 2}, {2, 3, 4, 5}))
          .scalar_int("axis", 1)
          .string("mode", "mul")
          .expect({F({2, 3}, {3, 2, 6, 20, 5, 24})}),
      op("scatter", "int32 max, one row twice")
          .in("data", I32({2, 2}, {5, -1, 0, 7}))
          .in("indices", I32({2}, {0, 0}))
          .in("updates", I32({2, 2}, {3, 4, 9, -8}))
          .string("mode", "max")
          .expect({I32({2, 2}, {9, 4, 0, 7})}),
      op("scatter_along_axis", "add along axis 1, repeated targets")
          .in("data", data23())
          .in("indices", I32({2, 3}, {2, 0, 1, 0, 0, 2}))
          .in("updates", F({2, 3}, {10, 20, 30, 40, 50, 60}))
          .scalar_int("axis", 1)
          .string("mode", "add")
          .expect({F({2, 3}, {21, 32, 13, 94, 5, 66})}),
      op("scatter_along_axis", "sub along axis 0")
          .in("data", data23())
          .in("indices", I32({1, 3}, {1, 0, 1}))
          .in("updates", F({1, 3}, {1, 2, 3}))
          .string("mode", "sub")
          .expect({F({2, 3}, {1, 0, 3, 3, 5, 3})}),
      op("scatter_nd", "update elements by full index tuples")
          .in("data", data23())
          .in("indices", I32({2, 2}, {0, 1, 1, 2}))
          .in("updates", F({2}, {10, 20}))
          .string("mode", "update")
          .expect({F({2, 3}, {1, 10, 3, 4, 5, 20})}),
      op("scatter_nd", "add a row (one index per tuple)")
          .in("data", data23())
          .in("indices", I32({1, 1}, {1}))
          .in("updates", F({1, 3}, {1, 1, 1}))
          .expect({F({2, 3}, {1, 2, 3, 5, 6, 7})}),
  };
}

[[maybe_unused]] const bool registered = add_entries(scatter_entries());

}  // namespace
}  // namespace staticllm::test::optable

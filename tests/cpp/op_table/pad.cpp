// Op-table entries of runtime/mil/ops/pad.cpp: each mode on the last axis
// and on the last two, the constant given and defaulted.
#include "op_table.h"

namespace staticllm::test::optable {
namespace {

std::vector<Entry> pad_entries() {
  Spec x = F({2, 3}, {1, 2, 3, 4, 5, 6});
  return {
      op("pad", "constant 0 by default, last axis")
          .in("x", x)
          .ints("pad", {1, 2})
          .expect({F({2, 6}, {0, 1, 2, 3, 0, 0, 0, 4, 5, 6, 0, 0})}),
      op("pad", "constant -1 on both axes")
          .in("x", x)
          .ints("pad", {1, 0, 0, 1})
          .string("mode", "constant")
          .scalar("constant_val", -1)
          .expect({F({3, 4}, {-1, -1, -1, -1, 1, 2, 3, -1, 4, 5, 6, -1})}),
      op("pad", "reflect, last axis")
          .in("x", x)
          .ints("pad", {2, 1})
          .string("mode", "reflect")
          .expect({F({2, 6}, {3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5})}),
      op("pad", "replicate, both axes")
          .in("x", x)
          .ints("pad", {1, 1, 0, 2})
          .string("mode", "replicate")
          .expect({F({4, 5}, {1, 2, 3, 3, 3, 1, 2, 3, 3, 3, 4, 5, 6, 6, 6, 4, 5, 6, 6, 6})}),
  };
}

[[maybe_unused]] const bool registered = add_entries(pad_entries());

}  // namespace
}  // namespace staticllm::test::optable

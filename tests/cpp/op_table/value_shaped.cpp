// Op-table entries of runtime/mil/ops/value_shaped.cpp: non_zero, whose
// output shape follows from its (constant) input's values.
#include "op_table.h"

namespace staticllm::test::optable {
namespace {

std::vector<Entry> non_zeros() {
  return {
      op("non_zero", "indices of non-zero elements, row-major")
          .konst("x", F({2, 3}, {0, 1.5, 0, -2, 0, 3}))
          .expect({I32({3, 2}, {0, 1, 1, 0, 1, 2})}),
      op("non_zero", "int32, rank 1").konst("x", I32({4}, {0, 7, 7, 0})).expect({I32({2, 1}, {1, 2})}),
      op("non_zero", "all zero: no rows").konst("x", I32({2, 2}, {0, 0, 0, 0})).expect({I32({0, 2}, {})}),
  };
}

[[maybe_unused]] const bool registered = add_entries(non_zeros());

}  // namespace
}  // namespace staticllm::test::optable

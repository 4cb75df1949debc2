// Op-table entries of runtime/mil/ops/state.cpp: reading a state copies it
// out; writing one leaves the new value in the state's own buffer (checked
// through `writes`) and, when the program declares a result, returns it.
#include "op_table.h"

namespace staticllm::test::optable {
namespace {

std::vector<Entry> states() {
  Spec old_value = F({2, 3}, {1, 2, 3, 4, 5, 6});
  Spec new_value = F({2, 3}, {-1, 0.5, 7, 8, -9, 10});
  Spec want = F({2, 3}, {-1, 0.5, 7, 8, -9, 10});
  return {
      op("read_state", "copies the state").in("input", old_value).expect({F({2, 3}, {1, 2, 3, 4, 5, 6})}),
      op("read_state", "int32 state").in("input", I32({2}, {7, -7})).expect({I32({2}, {7, -7})}),
      op("coreml_update_state", "writes the state, returns the value")
          .in("state", old_value)
          .in("value", new_value)
          .declares_output_like("value")
          .writes("state")
          .expect({want, want}),
      op("coreml_update_state", "writes the state, no result declared")
          .in("state", old_value)
          .in("value", new_value)
          .writes("state")
          .expect({want}),
      op("write_state", "writes the state").in("input", old_value).in("data", new_value).writes("input").expect({want}),
  };
}

[[maybe_unused]] const bool registered = add_entries(states());

}  // namespace
}  // namespace staticllm::test::optable

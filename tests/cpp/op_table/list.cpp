// Op-table entries of runtime/mil/ops/list.cpp: lists are held as their
// elements stacked ([length, *element shape]); a dynamic-length list grows
// when written past its end (new elements zero). Error cases (indices out of
// range, lengths known only at run time) are in tests/cpp/test_list.cpp.
#include "op_table.h"

namespace staticllm::test::optable {
namespace {

// Three elements of shape [2]: 1 2 | 3 4 | 5 6.
Spec three(bool dynamic_length) { return List(F({3, 2}, {1, 2, 3, 4, 5, 6}), dynamic_length); }

std::vector<Entry> lists() {
  return {
      op("make_list", "init_length zero elements of elem_shape")
          .scalar_int("init_length", 2)
          .flag("dynamic_length", false)
          .konst("elem_shape", I32({}, {2}))
          .konst("elem_shape", I32({}, {3}))
          .string("dtype", "fp16")
          .expect({Typed(DType::kFloat16, {2, 2, 3}, std::vector<double>(12, 0.0))}),
      op("make_list", "defaults: one fp32 element")
          .konst("elem_shape", I32({}, {2}))
          .expect({Typed(DType::kFloat32, {1, 2}, {0, 0})}),
      op("make_list", "int32, empty").scalar_int("init_length", 0).string("dtype", "int32").expect({I32({0}, {})}),
      op("list_length", "the planned length").in("ls", three(true)).expect({I32({}, {3})}),
      op("list_read", "run-time index").in("ls", three(false)).in("index", I32({}, {1})).expect({F({2}, {3, 4})}),
      op("list_read", "constant index").in("ls", three(true)).scalar_int("index", 2).expect({F({2}, {5, 6})}),
      op("list_write", "run-time index, fixed length")
          .in("ls", three(false))
          .in("index", I32({}, {2}))
          .in("value", F({2}, {-1, -2}))
          .expect({F({3, 2}, {1, 2, 3, 4, -1, -2})}),
      op("list_write", "past the end of a dynamic-length list: it grows, new elements zero")
          .in("ls", three(true))
          .scalar_int("index", 4)
          .in("value", F({2}, {7, 8}))
          .expect({F({5, 2}, {1, 2, 3, 4, 5, 6, 0, 0, 7, 8})}),
      op("list_gather", "run-time indices, repeated")
          .in("ls", three(false))
          .in("indices", I32({3}, {2, 0, 2}))
          .expect({F({3, 2}, {5, 6, 1, 2, 5, 6})}),
      op("list_gather", "int32 elements, no indices")
          .in("ls", List(I32({2, 1}, {9, 8}), true))
          .ints("indices", {})
          .expect({I32({0, 1}, {})}),
      op("list_scatter", "run-time indices, fixed length")
          .in("ls", three(false))
          .in("indices", I32({2}, {2, 0}))
          .in("value", F({2, 2}, {-1, -2, -3, -4}))
          .expect({F({3, 2}, {-3, -4, 3, 4, -1, -2})}),
      op("list_scatter", "past the end of a dynamic-length list: it grows")
          .in("ls", three(true))
          .ints("indices", {4, 1})
          .in("value", F({2, 2}, {-1, -2, -3, -4}))
          .expect({F({5, 2}, {1, 2, -3, -4, 5, 6, 0, 0, -1, -2})}),
  };
}

[[maybe_unused]] const bool registered = add_entries(lists());

}  // namespace
}  // namespace staticllm::test::optable

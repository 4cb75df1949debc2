// Op-table entries of runtime/mil/ops/rearrange.cpp with literal results
// (the TensorFlow / torch layouts each op follows, as in coremltools' tests).
#include "op_table.h"

namespace staticllm::test::optable {
namespace {

std::vector<double> iota(int n) {
  std::vector<double> v(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  return v;
}

std::vector<Entry> rearrange_entries() {
  // [1, 8, 1, 1] channels 0..7, block 2: depth_to_space reads channel (bh * 2 + bw) * 2 + c
  Spec ch8 = F({1, 8, 1, 1}, iota(8));
  Spec sp = F({1, 2, 2, 2}, iota(8));  // 2 channels of 2 x 2
  return {
      op("reverse", "axes 0 and -1")
          .in("x", F({2, 3}, iota(6)))
          .ints("axes", {0, -1})
          .expect({F({2, 3}, {5, 4, 3, 2, 1, 0})}),
      op("reverse", "all axes by default").in("x", I32({3}, {1, 2, 3})).expect({I32({3}, {3, 2, 1})}),
      op("reverse_sequence", "per-batch lengths along axis 1")
          .in("x", F({2, 4}, iota(8)))
          .in("lengths", I32({2}, {3, 0}))
          .scalar_int("seq_axis", 1)
          .scalar_int("batch_axis", 0)
          .expect({F({2, 4}, {2, 1, 0, 3, 4, 5, 6, 7})}),
      op("depth_to_space", "block 2: channels (block row, block column, channel)")
          .in("x", ch8)
          .scalar_int("block_size", 2)
          .expect({F({1, 2, 2, 2}, {0, 2, 4, 6, 1, 3, 5, 7})}),
      op("pixel_shuffle", "factor 2: channels (channel, block row, block column)")
          .in("x", ch8)
          .scalar_int("upscale_factor", 2)
          .expect({F({1, 2, 2, 2}, iota(8))}),
      op("space_to_depth", "block 2")
          .in("x", sp)
          .scalar_int("block_size", 2)
          .expect({F({1, 8, 1, 1}, {0, 4, 1, 5, 2, 6, 3, 7})}),
      op("pixel_unshuffle", "factor 2")
          .in("x", sp)
          .scalar_int("downscale_factor", 2)
          .expect({F({1, 8, 1, 1}, iota(8))}),
      // the example of coremltools' test: [2, 1, 2, 4] with 2 zero columns padded before W
      op("space_to_batch", "block 2 x 2, paddings before W")
          .in("x", F({2, 1, 2, 4}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}))
          .ints("block_shape", {2, 2})
          .konst("paddings", I32({2, 2}, {0, 0, 2, 0}))
          .expect({F({8, 1, 1, 3}, {0, 1, 3, 0, 9, 11, 0, 2, 4, 0, 10, 12, 0, 5, 7, 0, 13, 15, 0, 6, 8, 0, 14, 16})}),
      op("batch_to_space", "the inverse, crops before W")
          .in("x", F({8, 1, 1, 3}, {0, 1, 3, 0, 9, 11, 0, 2, 4, 0, 10, 12, 0, 5, 7, 0, 13, 15, 0, 6, 8, 0, 14, 16}))
          .ints("block_shape", {2, 2})
          .konst("crops", I32({2, 2}, {0, 0, 2, 0}))
          .expect({F({2, 1, 2, 4}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})}),
      op("sliding_windows", "size 2 stride 2 along axis 1")
          .in("x", F({2, 5}, iota(10)))
          .scalar_int("axis", 1)
          .scalar_int("size", 2)
          .scalar_int("stride", 2)
          .expect({F({2, 2, 2}, {0, 1, 2, 3, 5, 6, 7, 8})}),
  };
}

[[maybe_unused]] const bool registered = add_entries(rearrange_entries());

}  // namespace
}  // namespace staticllm::test::optable

// Sliding-window geometry of the spatial ops (pooling; [N, C, *D] layouts):
// per spatial axis the input and output sizes, kernel, stride, dilation and
// padding, from MIL's pad_type ("valid", "same", "same_lower", "custom")
// and pad, with ceil_mode as coremltools' type inference computes it.
#pragma once

#include <vector>

#include "mil/op.h"

namespace staticllm::mil {

struct SpatialAxis {
  int64_t in = 1, out = 1, kernel = 1, stride = 1, dilation = 1, pad_before = 0, pad_after = 0;
};

// Reads pad_type and pad from ctx; fails on values MIL does not define or on
// an empty output.
std::vector<SpatialAxis> plan_spatial(const OpPlanContext& ctx, const Shape& in, const std::vector<int64_t>& kernel,
                                      const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                                      bool ceil_mode);

}  // namespace staticllm::mil

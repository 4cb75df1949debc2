// linear and matmul where the gemm kernels of linear.cpp do not apply: the
// iOS17 forms with operands of different dtypes (fp16, fp32, int32; the
// result takes the dtype the program declares, that of the non-constant
// operand) and matmul with a rank-1 operand (numpy's vector products).
#pragma once

#include <cstdint>
#include <vector>

#include "mil/op.h"

namespace staticllm::mil {

// Whether matmul (its x and y) or linear (x and weight) needs this path.
bool needs_mixed_matmul(const OpPlanContext& ctx);
bool needs_mixed_linear(const OpPlanContext& ctx);
PlannedOp plan_mixed_matmul(OpPlanContext& ctx);
PlannedOp plan_mixed_linear(OpPlanContext& ctx);

// Element offsets of `own` (right-aligned, size-1 dims broadcast) for every
// index of `batch`, `matrix` elements per batch entry (linear.cpp and the
// attention ops use it too).
std::vector<int64_t> broadcast_offsets(const Shape& batch, const Shape& own, int64_t matrix);

}  // namespace staticllm::mil

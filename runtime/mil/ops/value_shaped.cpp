// Ops whose output shape follows from their input's values: non_zero. They
// run on the eager path (plan_cache.h), where the input is a constant when
// the op is planned; a function that computes it at run time cannot be
// planned ahead (RuntimeValueNeeded).
#include "mil/ops/elementwise_util.h"

namespace staticllm::mil {

namespace {

// The flat positions of x's non-zero elements, in order.
std::vector<int64_t> non_zero_positions(const Tensor& x) {
  std::vector<int64_t> at;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (load_one(x.dtype(), x.data(), i) != 0.0) at.push_back(i);
  }
  return at;
}

// non_zero(x): int32 [count, rank], the index of every non-zero element in
// row-major order (numpy's argwhere).
PlannedOp build_non_zero(OpPlanContext& ctx) {
  const Tensor* x = ctx.constant("x");
  if (x == nullptr) ctx.fail_run_time("the output shape depends on x's values, known only at run time");
  const Shape shape = x->shape();
  const auto count = static_cast<int64_t>(non_zero_positions(*x).size());
  const auto rank = static_cast<int64_t>(shape.size());
  const int slot = ctx.input("x");
  PlannedOp op;
  op.outputs.push_back({DType::kInt32, {count, rank}});
  op.run = [slot, shape, rank](const KernelCall& call) {
    const std::vector<int64_t> at = non_zero_positions(call.in(slot));
    int32_t* out = call.out(0).data_as<int32_t>();
    for (size_t n = 0; n < at.size(); ++n) {
      int64_t rest = at[n];
      for (int64_t d = rank - 1; d >= 0; --d) {
        out[static_cast<int64_t>(n) * rank + d] = static_cast<int32_t>(rest % shape[d]);
        rest /= shape[d];
      }
    }
  };
  return op;
}

}  // namespace

void register_value_shaped_ops(OpRegistry& r) { r.add("non_zero", build_non_zero); }

}  // namespace staticllm::mil

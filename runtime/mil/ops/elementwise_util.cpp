#include "mil/ops/elementwise_util.h"

namespace staticllm::mil {

std::vector<float> const_floats(const OpPlanContext& ctx, const std::string& param) {
  const Tensor* t = ctx.constant(param);
  if (t == nullptr) ctx.fail("parameter '" + param + "' must be a constant");
  std::vector<float> v(static_cast<size_t>(t->numel()));
  const float* p = floats_of(*t, v.data());
  if (p != v.data()) std::copy(p, p + v.size(), v.begin());
  return v;
}

bool plan_broadcast(const std::vector<Shape>& inputs, BroadcastPlan* plan) {
  if (inputs.empty() || inputs.size() > BroadcastPlan::kMaxOperands) return false;
  Shape out = inputs[0];
  for (size_t i = 1; i < inputs.size(); ++i) {
    if (!broadcast_shapes(out, inputs[i], &out)) return false;
  }
  size_t rank = out.size();
  // Per operand, per output dim: the element stride, 0 where broadcast.
  std::vector<std::vector<int64_t>> full(inputs.size(), std::vector<int64_t>(rank, 0));
  for (size_t j = 0; j < inputs.size(); ++j) {
    const Shape& s = inputs[j];
    int64_t stride = 1;
    for (size_t d = 0; d < s.size(); ++d) {
      size_t od = rank - 1 - d;
      int64_t dim = s[s.size() - 1 - d];
      full[j][od] = dim == 1 ? 0 : stride;
      stride *= dim;
    }
  }
  // Collapse adjacent dims where every operand stays contiguous across them,
  // so the inner runs are as long as possible. Size-1 dims are dropped.
  plan->out_shape = out;
  plan->dims.clear();
  plan->strides.assign(inputs.size(), {});
  for (size_t d = 0; d < rank; ++d) {
    if (out[d] == 1) continue;
    bool merge = !plan->dims.empty();
    for (size_t j = 0; merge && j < inputs.size(); ++j) {
      int64_t inner_stride = full[j][d];
      int64_t prev_stride = plan->strides[j].back();
      merge = prev_stride == inner_stride * out[d];
    }
    if (merge) {
      plan->dims.back() *= out[d];
      for (size_t j = 0; j < inputs.size(); ++j) plan->strides[j].back() = full[j][d];
    } else {
      plan->dims.push_back(out[d]);
      for (size_t j = 0; j < inputs.size(); ++j) plan->strides[j].push_back(full[j][d]);
    }
  }
  return plan->dims.size() <= BroadcastPlan::kMaxRank;
}

}  // namespace staticllm::mil

// Core ML states (iOS18): read_state copies the state out; coreml_update_state
// (write_state once saved) writes a new value into the state's buffer (the
// caller's State storage, bound for the call) and passes it on.
#include <cstring>

#include "mil/op.h"

namespace staticllm::mil {

namespace {

PlannedOp build_read_state(OpPlanContext& ctx) {
  const ValueType& t = ctx.type("input");
  int in = ctx.input("input");
  PlannedOp op;
  op.outputs.push_back(t);
  op.run = [in](const KernelCall& call) { std::memcpy(call.out(0).data(), call.in(in).data(), call.in(in).nbytes()); };
  return op;
}

PlannedOp build_update_state(OpPlanContext& ctx) {
  const ValueType& st = ctx.type("state");
  const ValueType& vt = ctx.type("value");
  if (st.dtype != vt.dtype || st.shape != vt.shape) ctx.fail("value does not match the state's type");
  int s = ctx.input("state"), v = ctx.input("value");
  PlannedOp op;
  if (!ctx.declared_outputs().empty()) op.outputs.push_back(vt);
  op.run = [s, v, has_out = !op.outputs.empty()](const KernelCall& call) {
    const Tensor& value = call.in(v);
    // the state tensor is the State's buffer, which this call holds alone
    std::memcpy(const_cast<void*>(call.in(s).data()), value.data(), value.nbytes());
    if (has_out) std::memcpy(call.out(0).data(), value.data(), value.nbytes());
  };
  return op;
}

// What coreml_update_state becomes in a saved program: write, no result.
PlannedOp build_write_state(OpPlanContext& ctx) {
  const ValueType& st = ctx.type("input");
  const ValueType& vt = ctx.type("data");
  if (st.dtype != vt.dtype || st.shape != vt.shape) ctx.fail("data does not match the state's type");
  int s = ctx.input("input"), v = ctx.input("data");
  PlannedOp op;
  op.run = [s, v](const KernelCall& call) {
    std::memcpy(const_cast<void*>(call.in(s).data()), call.in(v).data(), call.in(v).nbytes());
  };
  return op;
}

}  // namespace

void register_state_ops(OpRegistry& r) {
  r.add("read_state", build_read_state);
  r.add("coreml_update_state", build_update_state);
  r.add("write_state", build_write_state);
}

}  // namespace staticllm::mil

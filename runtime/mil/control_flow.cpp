#include "mil/control_flow.h"

#include <cstring>
#include <set>

#include "mil/executor.h"
#include "mil/planner.h"

namespace staticllm::mil {

namespace {

std::string type_string(const ValueType& t) { return spec_to_string(t.dtype, t.shape); }

// Names `block` reads that it does not define; `defined` holds what the
// scopes between it and the op define.
void collect_outer(const BlockDecl& block, std::set<std::string> defined, std::set<std::string>& seen,
                   std::vector<std::string>& out) {
  auto use = [&](const std::string& name) {
    if (!defined.count(name) && seen.insert(name).second) out.push_back(name);
  };
  for (const ValueDecl& in : block.inputs) defined.insert(in.name);
  for (const OpDecl& op : block.ops) {
    for (const auto& [param, bindings] : op.inputs) {
      for (const Binding& b : bindings) {
        if (!b.value) use(b.name);
      }
    }
    for (const BlockDecl& inner : op.blocks) collect_outer(inner, defined, seen, out);
    for (const ValueDecl& o : op.outputs) defined.insert(o.name);
  }
  for (const std::string& name : block.outputs) use(name);
}

// The outer values of the op, split into constants (bound to the blocks by
// name) and run-time values (block inputs after the block's own, read by the
// kernel from `slots`).
struct OuterValues {
  std::vector<std::pair<std::string, Tensor>> constants;
  std::vector<ValueDecl> runtime;
  std::vector<int> slots;
};

OuterValues bind_outer(OpPlanContext& ctx, const std::vector<std::string>& outer) {
  OuterValues v;
  for (size_t i = 0; i < outer.size(); ++i) {
    if (const Tensor* t = ctx.constant(kOuterParam, i)) {
      v.constants.push_back({outer[i], *t});
      continue;
    }
    v.runtime.push_back({outer[i], ctx.type(kOuterParam, i)});
    v.slots.push_back(ctx.input(kOuterParam, i));
  }
  return v;
}

TensorSpec spec_of(const std::string& name, const ValueType& type) {
  TensorSpec s;
  s.name = name;
  s.dtype = type.dtype;
  s.shape = type.shape;
  return s;
}

struct PlannedBlock {
  std::shared_ptr<Executor> executor;
  std::vector<ValueType> outputs;
};

// Plans block `index` of the op as function "<function>/<op name>.<label>",
// so that messages about its ops name where they are.
PlannedBlock plan_one(const OpPlanContext& ctx, const OpDecl& op, size_t index, const std::string& label,
                      const std::string& function, const OuterValues& outer, const BlockPlanner& plan_block) {
  const BlockDecl& block = op.blocks[index];
  FunctionDecl fn;
  fn.name = function + "/" + op.name + "." + label;
  fn.ios_opset = ctx.ios_opset();
  fn.inputs = block.inputs;
  fn.inputs.insert(fn.inputs.end(), outer.runtime.begin(), outer.runtime.end());
  fn.ops = block.ops;
  fn.outputs = block.outputs;
  MethodMetadata method;
  method.name = method.function_name = fn.name;
  for (const ValueDecl& in : fn.inputs) method.inputs.push_back(spec_of(in.name, in.type));
  for (const std::string& name : fn.outputs) method.outputs.push_back(spec_of(name, {}));
  std::shared_ptr<const Plan> plan = plan_block(fn, method, outer.constants);
  PlannedBlock planned;
  for (int id : plan->output_values) planned.outputs.push_back(plan->values[id].type);
  planned.executor = std::make_shared<Executor>(std::move(plan));
  return planned;
}

void copy_into(Tensor& dst, const Tensor& src) { std::memcpy(dst.data(), src.data(), src.nbytes()); }

bool is_true(const Tensor& t) { return t.data_as<uint8_t>()[0] != 0; }

// A bool that holds one element, as a predicate must.
void check_predicate(const OpPlanContext& ctx, const std::string& what, const ValueType& t) {
  if (t.dtype != DType::kBool || shape_numel(t.shape) != 1)
    ctx.fail(what + " must be a bool with one element, got " + type_string(t));
}

PlannedOp plan_cond(OpPlanContext& ctx, const OpDecl& op, const std::string& function,
                    const std::vector<std::string>& outer_names, const BlockPlanner& plan_block) {
  if (op.blocks.size() != 2) ctx.fail("needs 2 blocks (true and false), got " + std::to_string(op.blocks.size()));
  check_predicate(ctx, "'pred'", ctx.type("pred"));
  const int pred = ctx.input("pred");
  const OuterValues outer = bind_outer(ctx, outer_names);
  const std::vector<ValueType>& declared = ctx.declared_outputs();
  std::shared_ptr<Executor> branches[2];
  const char* labels[2] = {"true", "false"};
  for (size_t b = 0; b < 2; ++b) {
    if (!op.blocks[b].inputs.empty()) ctx.fail(std::string("the ") + labels[b] + " block must take no inputs");
    PlannedBlock block = plan_one(ctx, op, b, labels[b], function, outer, plan_block);
    if (block.outputs.size() != declared.size()) {
      ctx.fail(std::string("the ") + labels[b] + " block yields " + std::to_string(block.outputs.size()) +
               " values, the op declares " + std::to_string(declared.size()));
    }
    for (size_t i = 0; i < declared.size(); ++i) {
      if (block.outputs[i].dtype != declared[i].dtype || block.outputs[i].shape != declared[i].shape) {
        ctx.fail(std::string("the ") + labels[b] + " block yields " + type_string(block.outputs[i]) + " as output " +
                 std::to_string(i) + ", the op declares " + type_string(declared[i]));
      }
    }
    branches[b] = block.executor;
  }
  PlannedOp planned;
  planned.outputs = declared;
  planned.run = [pred, slots = outer.slots, t = branches[0], f = branches[1]](const KernelCall& call) {
    std::vector<Tensor> args;
    for (int s : slots) args.push_back(call.in(s));
    std::vector<Tensor> results = (is_true(call.in(pred)) ? t : f)->execute(args);
    for (size_t i = 0; i < results.size(); ++i) copy_into(call.out(static_cast<int>(i)), results[i]);
  };
  return planned;
}

PlannedOp plan_while_loop(OpPlanContext& ctx, const OpDecl& op, const std::string& function,
                          const std::vector<std::string>& outer_names, const BlockPlanner& plan_block) {
  if (op.blocks.size() != 2) ctx.fail("needs 2 blocks (cond and body), got " + std::to_string(op.blocks.size()));
  const size_t n = ctx.arity("loop_vars");
  const std::vector<ValueType>& declared = ctx.declared_outputs();
  if (declared.size() != n) {
    ctx.fail("has " + std::to_string(n) + " loop variables but declares " + std::to_string(declared.size()) +
             " outputs");
  }
  std::vector<int> vars;
  for (size_t i = 0; i < n; ++i) {
    const ValueType& t = ctx.type("loop_vars", i);
    if (t.dtype != declared[i].dtype || t.shape != declared[i].shape) {
      ctx.fail("loop variable " + std::to_string(i) + " is " + type_string(t) + " but the op declares " +
               type_string(declared[i]));
    }
    vars.push_back(ctx.input("loop_vars", i));
  }
  for (size_t b = 0; b < 2; ++b) {
    const std::vector<ValueDecl>& ins = op.blocks[b].inputs;
    bool same = ins.size() == n;
    for (size_t i = 0; same && i < n; ++i)
      same = ins[i].type.dtype == declared[i].dtype && ins[i].type.shape == declared[i].shape;
    if (!same)
      ctx.fail(std::string("the ") + (b == 0 ? "cond" : "body") + " block's inputs are not the loop variables' types");
  }
  const OuterValues outer = bind_outer(ctx, outer_names);
  PlannedBlock cond = plan_one(ctx, op, 0, "cond", function, outer, plan_block);
  if (cond.outputs.size() != 1)
    ctx.fail("the cond block must yield 1 value, got " + std::to_string(cond.outputs.size()));
  check_predicate(ctx, "the cond block's value", cond.outputs[0]);
  PlannedBlock body = plan_one(ctx, op, 1, "body", function, outer, plan_block);
  if (body.outputs.size() != n) {
    ctx.fail("the body block yields " + std::to_string(body.outputs.size()) + " values for " + std::to_string(n) +
             " loop variables");
  }
  for (size_t i = 0; i < n; ++i) {
    if (body.outputs[i].dtype == declared[i].dtype && body.outputs[i].shape == declared[i].shape) continue;
    ctx.fail("loop variable " + std::to_string(i) + " ('" + op.blocks[1].inputs[i].name + "') enters the body as " +
             type_string(declared[i]) + " and leaves it as " + type_string(body.outputs[i]) +
             "; loop variables must keep their type across iterations (loops whose shapes change are not supported "
             "yet)");
  }
  PlannedOp planned;
  planned.outputs = declared;
  planned.run = [vars, slots = outer.slots, cond = cond.executor, body = body.executor](const KernelCall& call) {
    // The loop variables live in the op's outputs; the blocks read them there.
    std::vector<Tensor> args;
    for (size_t i = 0; i < vars.size(); ++i) {
      copy_into(call.out(static_cast<int>(i)), call.in(vars[i]));
      args.push_back(call.out(static_cast<int>(i)));
    }
    for (int s : slots) args.push_back(call.in(s));
    while (is_true(cond->execute(args)[0])) {
      std::vector<Tensor> next = body->execute(args);  // fresh tensors: the old values stay readable until here
      for (size_t i = 0; i < next.size(); ++i) copy_into(call.out(static_cast<int>(i)), next[i]);
    }
  };
  return planned;
}

}  // namespace

bool is_control_flow_op(const std::string& type) { return type == "cond" || type == "while_loop"; }

std::vector<std::string> outer_names(const OpDecl& op) {
  std::set<std::string> seen;
  std::vector<std::string> out;
  for (const BlockDecl& block : op.blocks) collect_outer(block, {}, seen, out);
  return out;
}

PlannedOp plan_control_flow(OpPlanContext& ctx, const OpDecl& op, const std::string& function,
                            const std::vector<std::string>& outer, const BlockPlanner& plan_block) {
  if (op.type == "cond") return plan_cond(ctx, op, function, outer, plan_block);
  return plan_while_loop(ctx, op, function, outer, plan_block);
}

}  // namespace staticllm::mil

#include "mil/control_flow.h"

#include <cstring>
#include <set>

#include "mil/executor.h"
#include "mil/planner.h"

namespace staticllm::mil {

namespace {

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
  std::vector<NamedConstant> constants;
  std::vector<ValueDecl> runtime;
  std::vector<int> slots;
};

OuterValues bind_outer(OpPlanContext& ctx, const std::vector<std::string>& outer) {
  OuterValues v;
  for (size_t i = 0; i < outer.size(); ++i) {
    if (const Tensor* t = ctx.constant(kOuterParam, i)) {
      v.constants.push_back({outer[i], ctx.type(kOuterParam, i), *t});
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
// so that messages about its ops name where they are. `inputs` are the
// block's run-time inputs (loop variables, then outer values), `constants`
// the values it reads by name; `share_pool` as for BlockPlanner.
PlannedBlock plan_one(const OpPlanContext& ctx, const OpDecl& op, size_t index, const std::string& label,
                      const std::string& function, const std::vector<ValueDecl>& inputs,
                      const std::vector<NamedConstant>& constants, const BlockPlanner& plan_block,
                      bool share_pool = true) {
  const BlockDecl& block = op.blocks[index];
  FunctionDecl fn;
  fn.name = function + "/" + op.name + "." + label;
  fn.ios_opset = ctx.ios_opset();
  fn.inputs = inputs;
  fn.ops = block.ops;
  fn.outputs = block.outputs;
  MethodMetadata method;
  method.name = method.function_name = fn.name;
  for (const ValueDecl& in : fn.inputs) method.inputs.push_back(spec_of(in.name, in.type));
  for (const std::string& name : fn.outputs) method.outputs.push_back(spec_of(name, {}));
  std::shared_ptr<const Plan> plan = plan_block(fn, method, constants, share_pool);
  PlannedBlock planned;
  for (int id : plan->output_values) planned.outputs.push_back(plan->values[id].type);
  planned.executor = std::make_shared<Executor>(std::move(plan));
  return planned;
}

void copy_into(Tensor& dst, const Tensor& src) { std::memcpy(dst.data(), src.data(), src.nbytes()); }

bool is_true(const Tensor& t) { return t.data_as<uint8_t>()[0] != 0; }

bool same_type(const ValueType& a, const ValueType& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.is_list == b.is_list;
}

// A bool that holds one element, as a predicate must.
void check_predicate(const OpPlanContext& ctx, const std::string& what, const ValueType& t) {
  if (t.dtype != DType::kBool || shape_numel(t.shape) != 1)
    ctx.fail(what + " must be a bool with one element, got " + type_string(t));
}

// Whether every parameter of the op (outer values included) is a constant:
// then the op can be run while it is planned.
bool all_known(const OpPlanContext& ctx, const std::string& param) {
  for (const std::string& p : {param, std::string(kOuterParam)}) {
    for (size_t i = 0; i < ctx.arity(p); ++i) {
      if (ctx.constant(p, i) == nullptr) return false;
    }
  }
  return true;
}

PlannedOp plan_cond(OpPlanContext& ctx, const OpDecl& op, const std::string& function,
                    const std::vector<std::string>& outer_names, const BlockPlanner& plan_block) {
  if (op.blocks.size() != 2) ctx.fail("needs 2 blocks (true and false), got " + std::to_string(op.blocks.size()));
  check_predicate(ctx, "'pred'", ctx.type("pred"));
  const int pred = ctx.input("pred");
  const OuterValues outer = bind_outer(ctx, outer_names);
  const std::vector<ValueType>& declared = ctx.declared_outputs();
  PlannedBlock branches[2];
  const char* labels[2] = {"true", "false"};
  for (size_t b = 0; b < 2; ++b) {
    if (!op.blocks[b].inputs.empty()) ctx.fail(std::string("the ") + labels[b] + " block must take no inputs");
    PlannedBlock block = plan_one(ctx, op, b, labels[b], function, outer.runtime, outer.constants, plan_block);
    if (block.outputs.size() != declared.size()) {
      ctx.fail(std::string("the ") + labels[b] + " block yields " + std::to_string(block.outputs.size()) +
               " values, the op declares " + std::to_string(declared.size()));
    }
    for (size_t i = 0; i < declared.size(); ++i) {
      if (!fits_declared(declared[i], block.outputs[i])) {
        ctx.fail(std::string("the ") + labels[b] + " block yields " + type_string(block.outputs[i]) + " as output " +
                 std::to_string(i) + ", the op declares " + type_string(declared[i]));
      }
    }
    branches[b] = block;
  }
  PlannedOp planned;
  for (size_t i = 0; i < declared.size(); ++i) {
    if (same_type(branches[0].outputs[i], branches[1].outputs[i])) continue;
    // Lists the branches leave at different lengths: the op's type is the
    // taken branch's, known once the predicate is.
    const Tensor* p = ctx.constant("pred");
    if (p == nullptr || !outer.runtime.empty()) {
      ctx.fail_run_time("the branches yield " + type_string(branches[0].outputs[i]) + " and " +
                        type_string(branches[1].outputs[i]) + " as output " + std::to_string(i));
    }
    const PlannedBlock& taken = branches[is_true(*p) ? 0 : 1];
    planned.outputs = taken.outputs;
    planned.results = taken.executor->execute({});
    return planned;
  }
  planned.outputs = branches[0].outputs;
  planned.run = [pred, slots = outer.slots, t = branches[0].executor,
                 f = branches[1].executor](const KernelCall& call) {
    std::vector<Tensor> args;
    for (int s : slots) args.push_back(call.in(s));
    std::vector<Tensor> results = (is_true(call.in(pred)) ? t : f)->execute(args);
    for (size_t i = 0; i < results.size(); ++i) copy_into(call.out(static_cast<int>(i)), results[i]);
  };
  return planned;
}

// The loop variables' types as they enter, checked against the op's
// declaration and its blocks' inputs.
std::vector<ValueType> loop_var_types(const OpPlanContext& ctx, const OpDecl& op) {
  const size_t n = ctx.arity("loop_vars");
  const std::vector<ValueType>& declared = ctx.declared_outputs();
  if (declared.size() != n) {
    ctx.fail("has " + std::to_string(n) + " loop variables but declares " + std::to_string(declared.size()) +
             " outputs");
  }
  std::vector<ValueType> types;
  for (size_t i = 0; i < n; ++i) {
    const ValueType& t = ctx.type("loop_vars", i);
    if (!fits_declared(declared[i], t)) {
      ctx.fail("loop variable " + std::to_string(i) + " is " + type_string(t) + " but the op declares " +
               type_string(declared[i]));
    }
    types.push_back(t);
  }
  for (size_t b = 0; b < 2; ++b) {
    const std::vector<ValueDecl>& ins = op.blocks[b].inputs;
    bool same = ins.size() == n;
    for (size_t i = 0; same && i < n; ++i) same = same_type(ins[i].type, declared[i]);
    if (!same)
      ctx.fail(std::string("the ") + (b == 0 ? "cond" : "body") + " block's inputs are not the loop variables' types");
  }
  return types;
}

// The block's inputs: its loop variables with the types they enter with
// (a list's length and kind are the plan's, not the declaration's), then
// the outer run-time values.
std::vector<ValueDecl> loop_block_inputs(const BlockDecl& block, const std::vector<ValueType>& types,
                                         const OuterValues& outer) {
  std::vector<ValueDecl> inputs = block.inputs;
  for (size_t i = 0; i < types.size(); ++i) inputs[i].type = types[i];
  inputs.insert(inputs.end(), outer.runtime.begin(), outer.runtime.end());
  return inputs;
}

void check_cond_block(const OpPlanContext& ctx, const PlannedBlock& cond) {
  if (cond.outputs.size() != 1)
    ctx.fail("the cond block must yield 1 value, got " + std::to_string(cond.outputs.size()));
  check_predicate(ctx, "the cond block's value", cond.outputs[0]);
}

void check_body_block(const OpPlanContext& ctx, const PlannedBlock& body, size_t n) {
  if (body.outputs.size() != n) {
    ctx.fail("the body block yields " + std::to_string(body.outputs.size()) + " values for " + std::to_string(n) +
             " loop variables");
  }
}

// A loop whose variables change shape from one iteration to the next (a
// list that grows), with every input known (the eager path): no one plan
// fits every iteration, so the loop runs now, each iteration's blocks
// planned with the variables' current values as constants (which folds
// them). The types a variable takes must still fit the op's declaration.
PlannedOp run_loop_now(const OpPlanContext& ctx, const OpDecl& op, const std::string& function,
                       const OuterValues& outer, const BlockPlanner& plan_block) {
  const size_t n = ctx.arity("loop_vars");
  const std::vector<ValueType>& declared = ctx.declared_outputs();
  std::vector<NamedConstant> vars;
  for (size_t i = 0; i < n; ++i) vars.push_back({"", ctx.type("loop_vars", i), *ctx.constant("loop_vars", i)});
  auto bound = [&](size_t b) {
    std::vector<NamedConstant> constants = outer.constants;
    for (size_t i = 0; i < n; ++i) constants.push_back({op.blocks[b].inputs[i].name, vars[i].type, vars[i].value});
    return constants;
  };
  for (;;) {
    // (own pools: a growing list's every length would stay in a shared one)
    PlannedBlock cond = plan_one(ctx, op, 0, "cond", function, {}, bound(0), plan_block, false);
    check_cond_block(ctx, cond);
    if (!is_true(cond.executor->execute({})[0])) break;
    PlannedBlock body = plan_one(ctx, op, 1, "body", function, {}, bound(1), plan_block, false);
    check_body_block(ctx, body, n);
    std::vector<Tensor> next = body.executor->execute({});
    for (size_t i = 0; i < n; ++i) {
      if (!fits_declared(declared[i], body.outputs[i])) {
        ctx.fail("loop variable " + std::to_string(i) + " ('" + op.blocks[1].inputs[i].name + "') leaves the body as " +
                 type_string(body.outputs[i]) + ", the op declares " + type_string(declared[i]));
      }
      vars[i] = {"", body.outputs[i], std::move(next[i])};
    }
  }
  PlannedOp planned;
  for (NamedConstant& v : vars) {
    planned.outputs.push_back(v.type);
    planned.results.push_back(std::move(v.value));
  }
  return planned;
}

PlannedOp plan_while_loop(OpPlanContext& ctx, const OpDecl& op, const std::string& function,
                          const std::vector<std::string>& outer_names, const BlockPlanner& plan_block) {
  if (op.blocks.size() != 2) ctx.fail("needs 2 blocks (cond and body), got " + std::to_string(op.blocks.size()));
  const std::vector<ValueType> types = loop_var_types(ctx, op);
  const size_t n = types.size();
  const bool known = all_known(ctx, "loop_vars");
  std::vector<int> vars;
  for (size_t i = 0; i < n; ++i) vars.push_back(ctx.input("loop_vars", i));
  const OuterValues outer = bind_outer(ctx, outer_names);
  PlannedBlock cond, body;
  try {
    cond = plan_one(ctx, op, 0, "cond", function, loop_block_inputs(op.blocks[0], types, outer), outer.constants,
                    plan_block);
    check_cond_block(ctx, cond);
    body = plan_one(ctx, op, 1, "body", function, loop_block_inputs(op.blocks[1], types, outer), outer.constants,
                    plan_block);
    check_body_block(ctx, body, n);
  } catch (const RuntimeValueNeeded&) {
    // (a block needs values known only at run time: a list written at a
    // run-time index may grow)
    if (!known) throw;
    return run_loop_now(ctx, op, function, outer, plan_block);
  }
  for (size_t i = 0; i < n; ++i) {
    if (same_type(body.outputs[i], types[i])) continue;
    if (known) return run_loop_now(ctx, op, function, outer, plan_block);
    ctx.fail_run_time("loop variable " + std::to_string(i) + " ('" + op.blocks[1].inputs[i].name +
                      "') enters the body as " + type_string(types[i]) + " and leaves it as " +
                      type_string(body.outputs[i]) + ": the loop runs once its inputs are known");
  }
  PlannedOp planned;
  planned.outputs = types;
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

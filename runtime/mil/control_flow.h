// cond and while_loop: ops with nested blocks. Each block is planned as a
// plan of its own (its own arena, constants folded, kernels chosen once) and
// run by an Executor from the op's kernel.
//
// A block is planned like a function whose inputs are the block's inputs
// (while_loop's loop variables) followed by the run-time values of the
// enclosing scopes it reads; the constants it reads from there are bound to
// it by name, so they fold inside the block too.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mil/op.h"
#include "mil/program.h"
#include "staticllm/model_metadata.h"

namespace staticllm::mil {

struct Plan;

bool is_control_flow_op(const std::string& type);

// The values an op's blocks read from the scopes around the op (neither a
// block input nor defined in the block), nested blocks included, in order of
// first use.
std::vector<std::string> outer_names(const OpDecl& op);

// A constant a block reads by name: an outer value, or (when a loop runs
// while it is planned) a loop variable.
struct NamedConstant {
  std::string name;
  ValueType type;  // the tensor's dtype and shape, and whether it is a list
  Tensor value;
};

// Plans a block given as a function; `constants` are outer constants it may
// read by name. The planned output types are the block's; the metadata's
// output types are not checked. With `share_pool` its folded constants join
// the enclosing plan's pool; without, they live as long as the block's plan
// (a loop run while planned: each iteration's values die with it).
using BlockPlanner =
    std::function<std::shared_ptr<const Plan>(const FunctionDecl& block, const MethodMetadata& method,
                                              const std::vector<NamedConstant>& constants, bool share_pool)>;

// The kernel of a cond or while_loop op. `ctx` binds the op's parameters and,
// as parameter kOuterParam, the values named by `outer` (outer_names(op)).
// `function` names the enclosing function in messages.
inline constexpr const char* kOuterParam = "__outer";
PlannedOp plan_control_flow(OpPlanContext& ctx, const OpDecl& op, const std::string& function,
                            const std::vector<std::string>& outer, const BlockPlanner& plan_block);

}  // namespace staticllm::mil

// Planning a function once per method: resolve every op to a kernel, fold
// constants, check declared types against what the kernels compute and the
// method's metadata, and lay out one arena for all run-time values by
// liveness. The Plan is immutable; Executor (executor.h) runs it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mil/const_pool.h"
#include "mil/op.h"
#include "mil/program.h"
#include "staticllm/model_metadata.h"

namespace staticllm::mil {

struct PlanValue {
  std::string name;
  ValueType type;
  bool is_const = false;
  Tensor constant;  // when is_const (and not a string); for a lazy constant, once an op needs it dense
  // Constants made on demand and shared through the bundle's ConstPool:
  // output lazy_index of `lazy`.
  std::shared_ptr<LazyConsts> lazy;
  size_t lazy_index = 0;
  std::string string_val;  // string constants
  bool is_string = false;
  int input_index = -1;  // function input: position in the caller's order
  bool is_state = false;
  int64_t offset = -1;  // arena offset of run-time values
  // Reshape-like ops (and contiguous slices) whose input is a run-time value
  // share its bytes: this is the value owning them (an arena value or a
  // function input), -1 otherwise; the bytes start alias_offset into it.
  int alias_of = -1;
  int64_t alias_offset = 0;
};

struct PlanStep {
  std::string op_name, op_type;
  KernelFn run;
  std::vector<int> inputs;   // value ids, by kernel slot
  std::vector<int> outputs;  // value ids
  size_t scratch = 0;
};

struct Plan {
  std::string where;  // "method 'decode' (function 'decode')", for messages
  std::vector<PlanValue> values;
  std::vector<PlanStep> steps;
  std::vector<int> input_values;   // metadata input order, then states (the caller's buffers)
  std::vector<int> output_values;  // metadata output order
  size_t arena_bytes = 0;
  size_t scratch_bytes = 0;
};

// UnsupportedOpError, as plan_function throws it, for the first op of `fn`
// the interpreter lacks: a method that plans later checks this at load.
void check_ops_supported(const FunctionDecl& fn);

// What a plan is made for, beyond the method's declared shapes.
struct PlanFor {
  // The shapes of one call's inputs (metadata order), for a method whose
  // inputs are flexible; empty: the inputs' fixed or default shapes.
  std::vector<Shape> input_shapes;
  // The eager path: one call's inputs, planned as constants. Every op whose
  // inputs are all known is then evaluated while planning (the constant
  // folding every plan does), so an op whose shape or parameters come from
  // run-time values sees them as constants, and the plan's outputs are
  // computed. Only ops reading states remain as steps.
  const std::vector<Tensor>* input_values = nullptr;
};

// Plans `fn` for `method`. Throws UnsupportedOpError for an op the
// interpreter lacks (naming function, op and type, listing supported ops),
// RuntimeValueNeeded (op.h) when an op needs a value known only at run time
// (the caller may plan the call on the eager path instead) and BundleError
// when the program, the kernels or the metadata disagree.
// Functions planned with the same `pool` share their folded constants.
std::shared_ptr<const Plan> plan_function(const FunctionDecl& fn, const MethodMetadata& method,
                                          ConstPool* pool = nullptr, const PlanFor& plan_for = {});

}  // namespace staticllm::mil

// Planning a function once per method: resolve every op to a kernel, fold
// constants, check declared types, and lay out one arena for all run-time
// values by liveness. Execution reuses per-thread contexts built from the plan.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mil/op.h"
#include "mil/program.h"

namespace staticllm::mil {

struct PlanValue {
  std::string name;
  ValueType type;
  bool is_const = false;
  Tensor constant;         // when is_const
  std::string string_val;  // string constants
  bool is_string = false;
  int input_index = -1;    // function input (position in the caller's order)
  bool is_state = false;
  int64_t offset = -1;     // arena offset of run-time values
};

struct PlanStep {
  std::string op_name, op_type;
  KernelFn run;
  std::vector<int> inputs;   // value ids, by kernel slot
  std::vector<int> outputs;  // value ids
  size_t scratch = 0;
};

class PlannedFunction {
 public:
  // `input_names` / `output_names` / `state_names` give the caller's order (metadata).
  PlannedFunction(const FunctionDecl& fn, const std::vector<std::string>& input_names,
                  const std::vector<std::string>& output_names, const std::vector<std::string>& state_names);
  ~PlannedFunction();

  // Thread-safe; inputs in caller order followed by states.
  std::vector<Tensor> execute(const std::vector<Tensor>& inputs);

  const std::vector<PlanValue>& values() const { return values_; }
  size_t arena_bytes() const { return arena_bytes_; }

 private:
  struct Context;
  std::unique_ptr<Context> make_context() const;

  std::string function_;
  std::vector<PlanValue> values_;
  std::vector<PlanStep> steps_;
  std::vector<int> input_values_;   // caller order, then states
  std::vector<int> output_values_;  // caller order, then states
  size_t arena_bytes_ = 0;
  size_t scratch_bytes_ = 0;

  std::mutex pool_mutex_;
  std::vector<std::unique_ptr<Context>> free_contexts_;
};

}  // namespace staticllm::mil

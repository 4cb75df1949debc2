// Runs a Plan. Each call borrows an execution context (the arena, scratch and
// the tensor views kernels read and write) from a pool, so concurrent calls
// never share buffers and steady-state calls allocate only their outputs.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "mil/planner.h"

namespace staticllm::mil {

class Executor {
 public:
  explicit Executor(std::shared_ptr<const Plan> plan);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Thread-safe. `inputs` follow the metadata inputs and are only read;
  // `states` follow the metadata states and are the buffers the call reads and
  // updates in place (a State's storage; concurrent calls need different
  // ones). Returns fresh tensors for the metadata outputs. Callers validate
  // both (Method does); here a debug build only asserts. Kernel errors (e.g.
  // an out-of-range gather index, InputError) propagate after the context is
  // returned to the pool.
  std::vector<Tensor> execute(const std::vector<Tensor>& inputs, const std::vector<Tensor>& states = {});

  const Plan& plan() const { return *plan_; }
  // Contexts created so far (one per concurrent caller at most).
  size_t context_count() const;

 private:
  struct Context;
  std::unique_ptr<Context> acquire();
  void release(std::unique_ptr<Context> ctx);
  std::unique_ptr<Context> make_context() const;
  void assert_inputs(const std::vector<Tensor>& inputs, const std::vector<Tensor>& states) const;

  std::shared_ptr<const Plan> plan_;
  // Reshape-like values viewing a caller's input buffer: re-pointed on every
  // call, dropped when the context is pooled.
  std::vector<int> input_aliases_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Context>> free_;
  size_t created_ = 0;
};

}  // namespace staticllm::mil

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

  // Thread-safe. `inputs` follow the metadata inputs, then the states; the
  // result holds fresh tensors for the metadata outputs, then the states.
  // Kernel errors (e.g. an out-of-range gather index, InputError) propagate
  // after the context is returned to the pool.
  std::vector<Tensor> execute(const std::vector<Tensor>& inputs);

  const Plan& plan() const { return *plan_; }
  // Contexts created so far (one per concurrent caller at most).
  size_t context_count() const;

 private:
  struct Context;
  std::unique_ptr<Context> acquire();
  void release(std::unique_ptr<Context> ctx);
  std::unique_ptr<Context> make_context() const;
  void check_inputs(const std::vector<Tensor>& inputs) const;

  std::shared_ptr<const Plan> plan_;
  // Reshape-like values viewing a caller's input buffer: re-pointed on every
  // call, dropped when the context is pooled.
  std::vector<int> input_aliases_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Context>> free_;
  size_t created_ = 0;
};

}  // namespace staticllm::mil

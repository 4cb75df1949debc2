// How the interpreter runs one method, by what its shapes allow:
// - fixed shapes (every LLM bundle): one plan made at load, nothing else;
// - flexible inputs (a range or enumerated shapes): a plan per distinct set
//   of input shapes, made on the first call with it and kept in a bounded
//   least-recently-used cache (STATICLLM_PLAN_CACHE plans, 8 by default);
// - ops that need values known only at run time (non_zero, a reshape to a
//   computed shape, ...): the eager path, a plan per call made with the
//   call's inputs as constants (planner.h, PlanFor::input_values).
#pragma once

#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "mil/executor.h"
#include "mil/program.h"
#include "staticllm/model_metadata.h"

namespace staticllm::mil {

// STATICLLM_PLAN_CACHE when it is a positive integer, else 8 (read once).
size_t plan_cache_capacity();
// The same rule for a given value of the variable (null: unset).
size_t plan_cache_capacity(const char* env);

class MethodPlans {
 public:
  // Plans the method at its fixed or default input shapes, so an
  // unsupported op or a disagreeing program fails the load. Keeps `program`
  // only when later calls need to plan again.
  // `pool` is shared with the bundle's other methods; a Method may outlive
  // its Runtime, so the plans made later hold it too.
  MethodPlans(std::shared_ptr<const Program> program, const FunctionDecl& fn, const MethodMetadata& method,
              std::shared_ptr<ConstPool> pool, size_t capacity = plan_cache_capacity());

  // Thread-safe, like Executor::execute; inputs were validated by Method.
  std::vector<Tensor> execute(const std::vector<Tensor>& inputs, const std::vector<Tensor>& states);

  bool eager() const { return eager_; }
  bool fixed() const { return fixed_ != nullptr; }
  size_t cached_plans() const;  // plans in the cache now
  size_t plans_made() const;    // plans made for the cache, the load's one included

 private:
  using Key = std::vector<Shape>;
  std::shared_ptr<Executor> cached(const std::vector<Tensor>& inputs);
  std::vector<Tensor> execute_eager(const std::vector<Tensor>& inputs, const std::vector<Tensor>& states) const;

  std::shared_ptr<const Program> program_;  // null for a fixed method
  const FunctionDecl* fn_ = nullptr;        // in program_
  MethodMetadata method_;
  std::shared_ptr<ConstPool> pool_;
  size_t capacity_;
  std::shared_ptr<Executor> fixed_;
  bool eager_ = false;
  mutable std::mutex mutex_;
  std::vector<std::pair<Key, std::shared_ptr<Executor>>> lru_;  // most recently used first
  size_t made_ = 0;
};

}  // namespace staticllm::mil

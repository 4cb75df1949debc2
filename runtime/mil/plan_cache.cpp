#include "mil/plan_cache.h"

#include <algorithm>
#include <cstdlib>

#include "mil/planner.h"

namespace staticllm::mil {

size_t plan_cache_capacity(const char* env) {
  char* end = nullptr;
  const bool digits = env != nullptr && *env >= '0' && *env <= '9';  // strtoul takes "-1" as ULONG_MAX
  unsigned long n = digits ? std::strtoul(env, &end, 10) : 0;
  return n > 0 && *end == '\0' && n < 1000000 ? static_cast<size_t>(n) : size_t{8};
}

size_t plan_cache_capacity() {
  static const size_t capacity = plan_cache_capacity(std::getenv("STATICLLM_PLAN_CACHE"));
  return capacity;
}

namespace {

bool all_fixed(const MethodMetadata& m) {
  return std::all_of(m.inputs.begin(), m.inputs.end(), [](const TensorSpec& s) { return s.is_fixed(); });
}

std::vector<Shape> shapes_of(const std::vector<Tensor>& inputs) {
  std::vector<Shape> shapes;
  shapes.reserve(inputs.size());
  for (const Tensor& t : inputs) shapes.push_back(t.shape());
  return shapes;
}

}  // namespace

MethodPlans::MethodPlans(std::shared_ptr<const Program> program, const FunctionDecl& fn, const MethodMetadata& method,
                         std::shared_ptr<ConstPool> pool, size_t capacity)
    : method_(method), pool_(std::move(pool)), capacity_(std::max<size_t>(capacity, 1)) {
  const bool fixed = all_fixed(method);
  std::shared_ptr<const Plan> plan;
  try {
    if (!fixed) check_ops_supported(fn);
    plan = plan_function(fn, method, pool_.get());
  } catch (const RuntimeValueNeeded&) {
    eager_ = true;  // no plan can be made before the values are known
  } catch (const BundleError&) {
    // Flexible inputs' default shapes need not fit together (two RangeDims
    // that must be equal at run time may default differently): such a
    // method is planned at the first call's shapes, and fails there if the
    // program is wrong. A fixed method fails the load, as always.
    if (fixed) throw;
  }
  if (plan && fixed) {
    fixed_ = std::make_shared<Executor>(std::move(plan));  // today's path, and nothing more kept
    pool_.reset();
    return;
  }
  program_ = std::move(program);
  fn_ = &fn;
  if (plan) {
    Key key;
    for (const TensorSpec& s : method.inputs) key.push_back(s.planning_shape());
    lru_.emplace_back(std::move(key), std::make_shared<Executor>(std::move(plan)));
    made_ = 1;
  }
}

size_t MethodPlans::cached_plans() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lru_.size();
}

size_t MethodPlans::plans_made() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return made_;
}

// The plan for these input shapes, made now if the cache lacks it (evicting
// the least recently used past capacity_); null when the shapes need the
// eager path. Planning holds the lock: concurrent first calls with new
// shapes wait for each other rather than plan the same shapes twice.
std::shared_ptr<Executor> MethodPlans::cached(const std::vector<Tensor>& inputs) {
  Key key = shapes_of(inputs);
  std::lock_guard<std::mutex> lock(mutex_);
  auto hit = std::find_if(lru_.begin(), lru_.end(), [&](const auto& e) { return e.first == key; });
  if (hit != lru_.end()) {
    std::rotate(lru_.begin(), hit, hit + 1);
    return lru_.front().second;
  }
  PlanFor plan_for;
  plan_for.input_shapes = key;
  std::shared_ptr<const Plan> plan;
  try {
    plan = plan_function(*fn_, method_, pool_.get(), plan_for);
  } catch (const RuntimeValueNeeded&) {
    return nullptr;
  }
  ++made_;
  if (lru_.size() >= capacity_) lru_.pop_back();
  lru_.insert(lru_.begin(), {std::move(key), std::make_shared<Executor>(std::move(plan))});
  return lru_.front().second;
}

// A fresh pool: the call's constants (its inputs and all that follows from
// them) die with the call instead of filling the bundle's pool.
std::vector<Tensor> MethodPlans::execute_eager(const std::vector<Tensor>& inputs,
                                               const std::vector<Tensor>& states) const {
  PlanFor plan_for;
  plan_for.input_values = &inputs;
  Executor exec(plan_function(*fn_, method_, nullptr, plan_for));
  return exec.execute(inputs, states);
}

std::vector<Tensor> MethodPlans::execute(const std::vector<Tensor>& inputs, const std::vector<Tensor>& states) {
  if (fixed_) return fixed_->execute(inputs, states);
  if (!eager_) {
    if (std::shared_ptr<Executor> exec = cached(inputs)) return exec->execute(inputs, states);
  }
  return execute_eager(inputs, states);
}

}  // namespace staticllm::mil

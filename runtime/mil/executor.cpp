#include "mil/executor.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "mil/thread_pool.h"
#include "staticllm/errors.h"

namespace staticllm::mil {

namespace {

// STATICLLM_PROFILE=1: time every op and print the totals per method and op
// type when the process exits, to see where each method spends its time.
class OpProfile {
 public:
  static OpProfile* get() {
    static OpProfile* profile = std::getenv("STATICLLM_PROFILE") ? new OpProfile() : nullptr;
    return profile;
  }
  void add(const std::string& where, const std::string& type, double seconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& e = methods_[where].ops[type];
    e.first += seconds;
    e.second += 1;
  }
  void add_call(const std::string& where, double seconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    Method& m = methods_[where];
    m.seconds += seconds;
    m.calls += 1;
  }

 private:
  struct Method {
    double seconds = 0;  // whole executions, ops and the time between them
    int64_t calls = 0;
    std::map<std::string, std::pair<double, int64_t>> ops;  // seconds, calls
  };
  OpProfile() {
    std::atexit([] { get()->print(); });
  }
  void print() {
    for (const auto& [where, m] : methods_) {
      std::vector<std::pair<double, std::string>> rows;
      double all = 0;
      for (const auto& [type, e] : m.ops) {
        rows.push_back({e.first, type});
        all += e.first;
      }
      std::sort(rows.rbegin(), rows.rend());
      const double per_call = m.calls > 0 ? 1e3 / static_cast<double>(m.calls) : 0.0;
      std::fprintf(stderr, "staticllm op profile: %s, %ld calls, %.3f ms a call (%.3f ms in ops)\n", where.c_str(),
                   static_cast<long>(m.calls), m.seconds * per_call, all * per_call);
      for (const auto& [sec, type] : rows) {
        const auto& e = m.ops.at(type);
        std::fprintf(stderr, "  %-32s %9.3f ms a call %5.1f%% %7ld ops a call\n", type.c_str(), sec * per_call,
                     all > 0 ? 100 * sec / all : 0.0, static_cast<long>(m.calls > 0 ? e.second / m.calls : 0));
      }
    }
  }
  std::mutex mutex_;
  std::map<std::string, Method> methods_;
};

}  // namespace

struct Executor::Context {
  Tensor arena;  // 64-byte aligned (Tensor storage is)
  Tensor scratch;
  std::vector<Tensor> tensors;  // one per plan value: arena views, constants, or the caller's inputs
  std::vector<std::vector<const Tensor*>> step_inputs;
  std::vector<std::vector<Tensor*>> step_outputs;
};

Executor::Executor(std::shared_ptr<const Plan> plan) : plan_(std::move(plan)) {
  for (size_t id = 0; id < plan_->values.size(); ++id) {
    const PlanValue& v = plan_->values[id];
    if (v.alias_of >= 0 && v.offset < 0) input_aliases_.push_back(static_cast<int>(id));
  }
  created_ = 1;
  release(make_context());  // built at load, so the first call does not allocate it
}

Executor::~Executor() = default;

size_t Executor::context_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return created_;
}

std::unique_ptr<Executor::Context> Executor::make_context() const {
  auto ctx = std::make_unique<Context>();
  ctx->arena = Tensor(DType::kUInt8, {static_cast<int64_t>(plan_->arena_bytes)});
  ctx->scratch = Tensor(DType::kUInt8, {static_cast<int64_t>(plan_->scratch_bytes)});
  auto* base = ctx->arena.data_as<uint8_t>();
  ctx->tensors.resize(plan_->values.size());
  for (size_t id = 0; id < plan_->values.size(); ++id) {
    const PlanValue& v = plan_->values[id];
    if (v.is_const)
      ctx->tensors[id] = v.constant;
    else if (v.offset >= 0)
      ctx->tensors[id] = Tensor::view(v.type.dtype, v.type.shape, base + v.offset);
  }
  for (const PlanStep& s : plan_->steps) {
    std::vector<const Tensor*> ins;
    for (int id : s.inputs) ins.push_back(&ctx->tensors[id]);
    std::vector<Tensor*> outs;
    for (int id : s.outputs) outs.push_back(&ctx->tensors[id]);
    ctx->step_inputs.push_back(std::move(ins));
    ctx->step_outputs.push_back(std::move(outs));
  }
  return ctx;
}

std::unique_ptr<Executor::Context> Executor::acquire() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!free_.empty()) {
      auto ctx = std::move(free_.back());
      free_.pop_back();
      return ctx;
    }
    ++created_;
  }
  return make_context();  // outside the lock: other callers need not wait
}

void Executor::release(std::unique_ptr<Context> ctx) {
  // Drop the references to the caller's inputs and states before pooling.
  for (int id : plan_->input_values) ctx->tensors[id] = Tensor();
  for (int id : input_aliases_) ctx->tensors[id] = Tensor();
  std::lock_guard<std::mutex> lock(mutex_);
  free_.push_back(std::move(ctx));
}

// Method validates every call before it gets here (the one full check); a
// debug build asserts it held.
void Executor::assert_inputs(const std::vector<Tensor>& inputs, const std::vector<Tensor>& states) const {
  assert(inputs.size() + states.size() == plan_->input_values.size());
  for (size_t i = 0; i < plan_->input_values.size(); ++i) {
    const PlanValue& v = plan_->values[plan_->input_values[i]];
    const Tensor& t = i < inputs.size() ? inputs[i] : states[i - inputs.size()];
    assert(v.is_state == (i >= inputs.size()));
    assert(t.dtype() == v.type.dtype && t.shape() == v.type.shape && t.defined());
    (void)v;
    (void)t;
  }
}

std::vector<Tensor> Executor::execute(const std::vector<Tensor>& inputs, const std::vector<Tensor>& states) {
#ifndef NDEBUG
  assert_inputs(inputs, states);
#endif
  std::unique_ptr<Context> ctx = acquire();
  // Hand the context back on every exit path, exceptions included.
  struct Return {
    Executor* self;
    std::unique_ptr<Context>& ctx;
    ~Return() { self->release(std::move(ctx)); }
  } give_back{this, ctx};

  const Plan& plan = *plan_;
  // Inputs are read in place and never written; states are written in place
  // by write_state, so they live in the caller's buffers, not the arena.
  for (size_t i = 0; i < plan.input_values.size(); ++i) {
    ctx->tensors[plan.input_values[i]] = i < inputs.size() ? inputs[i] : states[i - inputs.size()];
  }
  for (int id : input_aliases_) {
    const PlanValue& v = plan.values[id];
    auto* root = static_cast<uint8_t*>(ctx->tensors[v.alias_of].data());
    ctx->tensors[id] = Tensor::view(v.type.dtype, v.type.shape, root + v.alias_offset);
  }
  ThreadPool& pool = default_thread_pool();
  OpProfile* profile = OpProfile::get();
  const auto call_start = std::chrono::steady_clock::now();
  for (size_t s = 0; s < plan.steps.size(); ++s) {
    KernelCall call{ctx->step_inputs[s].data(), ctx->step_outputs[s].data(), &pool, ctx->scratch.data()};
    if (profile == nullptr) {
      plan.steps[s].run(call);
      continue;
    }
    auto start = std::chrono::steady_clock::now();
    plan.steps[s].run(call);
    profile->add(plan.where, plan.steps[s].op_type,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (profile != nullptr) {
    profile->add_call(plan.where, std::chrono::duration<double>(std::chrono::steady_clock::now() - call_start).count());
  }
  std::vector<Tensor> outputs;
  outputs.reserve(plan.output_values.size());
  for (int id : plan.output_values) {
    const Tensor& src = ctx->tensors[id];
    Tensor out(src.dtype(), src.shape());
    std::memcpy(out.data(), src.data(), src.nbytes());
    outputs.push_back(std::move(out));
  }
  return outputs;
}

}  // namespace staticllm::mil

#include "mil/planner.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <unordered_map>

#include "mil/thread_pool.h"
#include "staticllm/errors.h"

namespace staticllm::mil {

namespace {

constexpr size_t kAlign = 64;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::string type_string(const ValueType& t) { return std::string(dtype_name(t.dtype)) + " " + shape_to_string(t.shape); }

// The builder's view of one op during planning.
class PlanContext : public OpPlanContext {
 public:
  PlanContext(const std::string& function, const OpDecl& op, std::vector<PlanValue>& values,
              std::map<std::string, std::vector<int>> params, std::vector<ValueType> declared)
      : function_(function), op_(op), values_(values), params_(std::move(params)), declared_(std::move(declared)) {}

  const std::string& op_type() const override { return op_.type; }
  const std::string& op_name() const override { return op_.name; }
  bool has(const std::string& p) const override { return params_.count(p) > 0; }
  size_t arity(const std::string& p) const override {
    auto it = params_.find(p);
    return it == params_.end() ? 0 : it->second.size();
  }
  const ValueType& type(const std::string& p, size_t i) const override { return values_[id(p, i)].type; }
  const Tensor* constant(const std::string& p, size_t i) const override {
    const PlanValue& v = values_[id(p, i)];
    return v.is_const && !v.is_string ? &v.constant : nullptr;
  }
  int input(const std::string& p, size_t i) override {
    inputs.push_back(id(p, i));
    return static_cast<int>(inputs.size()) - 1;
  }
  const std::vector<ValueType>& declared_outputs() const override { return declared_; }
  [[noreturn]] void fail(const std::string& message) const override {
    throw BundleError(function_ + "/" + op_.name + " (" + op_.type + "): " + message);
  }
  std::string const_string(const std::string& p) const override {
    const PlanValue& v = values_[id(p, 0)];
    if (!v.is_string || !v.is_const) fail("parameter '" + p + "' must be a constant string");
    return v.string_val;
  }

  std::vector<int> inputs;

 private:
  int id(const std::string& p, size_t i) const {
    auto it = params_.find(p);
    if (it == params_.end()) fail("missing parameter '" + p + "'");
    if (i >= it->second.size()) fail("parameter '" + p + "' has no argument " + std::to_string(i));
    return it->second[i];
  }

  const std::string& function_;
  const OpDecl& op_;
  std::vector<PlanValue>& values_;
  std::map<std::string, std::vector<int>> params_;
  std::vector<ValueType> declared_;
};

// First-fit arena allocator over free blocks, used only while planning.
class ArenaPlanner {
 public:
  size_t allocate(size_t bytes) {
    bytes = align_up(std::max<size_t>(bytes, 1));
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second >= bytes) {
        size_t off = it->first;
        if (it->second == bytes) free_.erase(it);
        else {
          it->first += bytes;
          it->second -= bytes;
        }
        return off;
      }
    }
    size_t off = end_;
    end_ += bytes;
    return off;
  }
  void release(size_t offset, size_t bytes) {
    bytes = align_up(std::max<size_t>(bytes, 1));
    free_.push_back({offset, bytes});
    std::sort(free_.begin(), free_.end());
    std::vector<std::pair<size_t, size_t>> merged;
    for (const auto& b : free_) {
      if (!merged.empty() && merged.back().first + merged.back().second == b.first) merged.back().second += b.second;
      else merged.push_back(b);
    }
    free_ = std::move(merged);
  }
  size_t size() const { return end_; }

 private:
  std::vector<std::pair<size_t, size_t>> free_;
  size_t end_ = 0;
};

// STATICLLM_PROFILE=1: time every op and print the totals per op type when
// the process exits, to see where a method spends its time.
class OpProfile {
 public:
  static OpProfile* get() {
    static OpProfile* profile = std::getenv("STATICLLM_PROFILE") ? new OpProfile() : nullptr;
    return profile;
  }
  void add(const std::string& type, double seconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& e = totals_[type];
    e.first += seconds;
    e.second += 1;
  }
  ~OpProfile() = default;

 private:
  OpProfile() {
    std::atexit([] { get()->print(); });
  }
  void print() {
    std::vector<std::pair<double, std::string>> rows;
    double all = 0;
    for (const auto& [type, e] : totals_) {
      rows.push_back({e.first, type});
      all += e.first;
    }
    std::sort(rows.rbegin(), rows.rend());
    std::fprintf(stderr, "staticllm op profile (%.3f s in ops)\n", all);
    for (const auto& [sec, type] : rows) {
      std::fprintf(stderr, "  %-32s %9.3f s %5.1f%% %9ld calls\n", type.c_str(), sec, 100 * sec / all,
                   static_cast<long>(totals_[type].second));
    }
  }
  std::mutex mutex_;
  std::map<std::string, std::pair<double, int64_t>> totals_;
};

}  // namespace

struct PlannedFunction::Context {
  std::shared_ptr<void> arena;
  std::shared_ptr<void> scratch;
  std::vector<Tensor> tensors;  // one per value: views into the arena, or constants
  std::vector<std::vector<const Tensor*>> step_inputs;
  std::vector<std::vector<Tensor*>> step_outputs;
};

static std::shared_ptr<void> aligned_buffer(size_t bytes) {
  void* p = ::operator new(std::max<size_t>(bytes, kAlign), std::align_val_t(kAlign));
  return std::shared_ptr<void>(p, [](void* q) { ::operator delete(q, std::align_val_t(kAlign)); });
}

PlannedFunction::PlannedFunction(const FunctionDecl& fn, const std::vector<std::string>& input_names,
                                 const std::vector<std::string>& output_names,
                                 const std::vector<std::string>& state_names)
    : function_("function '" + fn.name + "'") {
  std::unordered_map<std::string, int> by_name;
  auto add_value = [&](PlanValue v) {
    values_.push_back(std::move(v));
    return static_cast<int>(values_.size()) - 1;
  };
  // Function inputs, in the caller's order (inputs, then states).
  std::vector<std::string> caller_inputs = input_names;
  caller_inputs.insert(caller_inputs.end(), state_names.begin(), state_names.end());
  for (const ValueDecl& in : fn.inputs) {
    PlanValue v;
    v.name = in.name;
    v.type = in.type;
    v.is_state = in.is_state;
    auto pos = std::find(caller_inputs.begin(), caller_inputs.end(), in.name);
    if (pos == caller_inputs.end()) {
      throw BundleError(function_ + ": program input '" + in.name + "' is not in the method's metadata");
    }
    v.input_index = static_cast<int>(pos - caller_inputs.begin());
    by_name[in.name] = add_value(std::move(v));
  }
  for (const std::string& name : caller_inputs) {
    if (!by_name.count(name)) throw BundleError(function_ + ": metadata input '" + name + "' is not a program input");
    input_values_.push_back(by_name[name]);
  }

  ThreadPool& pool = default_thread_pool();
  std::vector<int> last_use;  // filled after steps are known
  for (const OpDecl& op : fn.ops) {
    std::string where = function_ + ", op '" + op.name + "' (type '" + op.type + "')";
    if (op.has_blocks) throw UnsupportedOpError(where + ": ops with nested blocks are not supported by the portable interpreter");
    if (op.type == "const") {
      PlanValue v;
      v.name = op.name;
      v.is_const = true;
      v.is_string = op.const_val->is_string;
      v.string_val = op.const_val->str;
      v.constant = op.const_val->tensor;
      v.type = op.outputs.empty() ? ValueType{} : op.outputs[0].type;
      if (!v.is_string) v.type = {v.constant.dtype(), v.constant.shape()};
      by_name[op.name] = add_value(std::move(v));
      continue;
    }
    const OpBuilder* builder = OpRegistry::instance().find(op.type);
    if (builder == nullptr) {
      std::string known;
      for (const auto& t : OpRegistry::instance().op_types()) known += (known.empty() ? "" : ", ") + t;
      throw UnsupportedOpError(where + ": op not supported by the portable interpreter; supported: " + known);
    }
    std::map<std::string, std::vector<int>> params;
    for (const auto& [param, bindings] : op.inputs) {
      for (const Binding& b : bindings) {
        if (b.value) {
          PlanValue v;
          v.name = op.name + "." + param;
          v.is_const = true;
          v.is_string = b.value->is_string;
          v.string_val = b.value->str;
          v.constant = b.value->tensor;
          v.type = {b.value->tensor.dtype(), b.value->tensor.shape()};
          params[param].push_back(add_value(std::move(v)));
        } else {
          auto it = by_name.find(b.name);
          if (it == by_name.end()) throw BundleError(where + ": input '" + param + "' refers to unknown value '" + b.name + "'");
          params[param].push_back(it->second);
        }
      }
    }
    std::vector<ValueType> declared;
    for (const auto& o : op.outputs) declared.push_back(o.type);
    PlanContext ctx(function_, op, values_, std::move(params), declared);
    PlannedOp planned = (*builder)(ctx);
    if (planned.outputs.size() != op.outputs.size()) {
      throw BundleError(where + ": kernel produces " + std::to_string(planned.outputs.size()) + " outputs, program declares " +
                        std::to_string(op.outputs.size()));
    }
    for (size_t i = 0; i < planned.outputs.size(); ++i) {
      const ValueType& got = planned.outputs[i];
      const ValueType& want = op.outputs[i].type;
      if (got.dtype != want.dtype || got.shape != want.shape) {
        throw BundleError(where + ": output '" + op.outputs[i].name + "' is declared " + type_string(want) +
                          " but the op computes " + type_string(got));
      }
    }
    bool foldable = std::all_of(ctx.inputs.begin(), ctx.inputs.end(), [&](int id) { return values_[id].is_const; });
    std::vector<int> outs;
    for (size_t i = 0; i < op.outputs.size(); ++i) {
      PlanValue v;
      v.name = op.outputs[i].name;
      v.type = op.outputs[i].type;
      outs.push_back(add_value(std::move(v)));
      by_name[op.outputs[i].name] = outs.back();
    }
    if (foldable) {
      // All inputs known now: run once and keep the results as constants
      // (this is where constexpr dequantization happens).
      std::vector<const Tensor*> ins;
      for (int id : ctx.inputs) ins.push_back(&values_[id].constant);
      std::vector<Tensor> results;
      for (int id : outs) results.emplace_back(values_[id].type.dtype, values_[id].type.shape);
      std::vector<Tensor*> res_ptrs;
      for (auto& t : results) res_ptrs.push_back(&t);
      std::shared_ptr<void> scratch = aligned_buffer(planned.scratch_bytes);
      KernelCall call{ins.data(), res_ptrs.data(), &pool, scratch.get()};
      planned.run(call);
      for (size_t i = 0; i < outs.size(); ++i) {
        values_[outs[i]].is_const = true;
        values_[outs[i]].constant = results[i];
      }
      continue;
    }
    steps_.push_back({op.name, op.type, std::move(planned.run), ctx.inputs, outs, planned.scratch_bytes});
  }

  std::vector<std::string> caller_outputs = output_names;
  caller_outputs.insert(caller_outputs.end(), state_names.begin(), state_names.end());
  for (size_t i = 0; i < caller_outputs.size(); ++i) {
    const std::string& name = i < output_names.size() ? caller_outputs[i] : caller_outputs[i];
    bool in_program = i >= output_names.size() || std::find(fn.outputs.begin(), fn.outputs.end(), name) != fn.outputs.end();
    auto it = by_name.find(name);
    if (!in_program || it == by_name.end()) {
      throw BundleError(function_ + ": metadata output '" + name + "' is not an output of the program");
    }
    output_values_.push_back(it->second);
  }

  // Liveness: a run-time value lives from its defining step to its last
  // reader; function outputs and states live to the end.
  int n_steps = static_cast<int>(steps_.size());
  std::vector<int> end(values_.size(), -1);
  for (int s = 0; s < n_steps; ++s)
    for (int id : steps_[s].inputs) end[id] = std::max(end[id], s);
  for (int id : output_values_) end[id] = n_steps;
  for (size_t id = 0; id < values_.size(); ++id)
    if (values_[id].is_state) end[id] = n_steps;
  ArenaPlanner arena;
  // States are copied into the arena so ops may update them in place.
  for (int id : input_values_) {
    if (values_[id].is_state) values_[id].offset = static_cast<int64_t>(arena.allocate(
        static_cast<size_t>(shape_numel(values_[id].type.shape)) * dtype_size(values_[id].type.dtype)));
  }
  for (int s = 0; s < n_steps; ++s) {
    for (int id : steps_[s].outputs) {
      size_t bytes = static_cast<size_t>(shape_numel(values_[id].type.shape)) * dtype_size(values_[id].type.dtype);
      values_[id].offset = static_cast<int64_t>(arena.allocate(bytes));
      if (end[id] < 0) end[id] = s;  // unused output: free right after
    }
    std::vector<int> done;
    for (int id : steps_[s].inputs)
      if (!values_[id].is_const && values_[id].input_index < 0 && end[id] == s) done.push_back(id);
    for (int id : steps_[s].outputs)
      if (end[id] == s) done.push_back(id);
    std::sort(done.begin(), done.end());
    done.erase(std::unique(done.begin(), done.end()), done.end());
    for (int id : done) {
      size_t bytes = static_cast<size_t>(shape_numel(values_[id].type.shape)) * dtype_size(values_[id].type.dtype);
      arena.release(static_cast<size_t>(values_[id].offset), bytes);
    }
    scratch_bytes_ = std::max(scratch_bytes_, steps_[s].scratch);
  }
  arena_bytes_ = arena.size();
}

PlannedFunction::~PlannedFunction() = default;

std::unique_ptr<PlannedFunction::Context> PlannedFunction::make_context() const {
  auto ctx = std::make_unique<Context>();
  ctx->arena = aligned_buffer(arena_bytes_);
  ctx->scratch = aligned_buffer(scratch_bytes_);
  auto* base = static_cast<uint8_t*>(ctx->arena.get());
  ctx->tensors.resize(values_.size());
  for (size_t id = 0; id < values_.size(); ++id) {
    const PlanValue& v = values_[id];
    if (v.is_const) ctx->tensors[id] = v.constant;
    else if (v.offset >= 0) ctx->tensors[id] = Tensor::view(v.type.dtype, v.type.shape, base + v.offset);
  }
  for (const PlanStep& s : steps_) {
    std::vector<const Tensor*> ins;
    for (int id : s.inputs) ins.push_back(&ctx->tensors[id]);
    std::vector<Tensor*> outs;
    for (int id : s.outputs) outs.push_back(&ctx->tensors[id]);
    ctx->step_inputs.push_back(std::move(ins));
    ctx->step_outputs.push_back(std::move(outs));
  }
  return ctx;
}

std::vector<Tensor> PlannedFunction::execute(const std::vector<Tensor>& inputs) {
  std::unique_ptr<Context> ctx;
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (!free_contexts_.empty()) {
      ctx = std::move(free_contexts_.back());
      free_contexts_.pop_back();
    }
  }
  if (!ctx) ctx = make_context();
  // Hand the context back on every exit path, exceptions included.
  struct Return {
    PlannedFunction* self;
    std::unique_ptr<Context>& ctx;
    ~Return() {
      std::lock_guard<std::mutex> lock(self->pool_mutex_);
      self->free_contexts_.push_back(std::move(ctx));
    }
  } give_back{this, ctx};

  for (size_t i = 0; i < input_values_.size(); ++i) {
    int id = input_values_[i];
    const PlanValue& v = values_[id];
    if (v.is_state) std::memcpy(ctx->tensors[id].data(), inputs[i].data(), inputs[i].nbytes());
    else ctx->tensors[id] = inputs[i];
  }
  ThreadPool& pool = default_thread_pool();
  OpProfile* profile = OpProfile::get();
  for (size_t s = 0; s < steps_.size(); ++s) {
    KernelCall call{ctx->step_inputs[s].data(), ctx->step_outputs[s].data(), &pool, ctx->scratch.get()};
    if (profile == nullptr) {
      steps_[s].run(call);
      continue;
    }
    auto start = std::chrono::steady_clock::now();
    steps_[s].run(call);
    profile->add(steps_[s].op_type, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::vector<Tensor> outputs;
  for (int id : output_values_) {
    const Tensor& src = ctx->tensors[id];
    Tensor out(src.dtype(), src.shape());
    std::memcpy(out.data(), src.data(), src.nbytes());
    outputs.push_back(std::move(out));
  }
  for (int id : input_values_) {
    if (!values_[id].is_state) ctx->tensors[id] = Tensor();  // drop the caller's buffers
  }
  return outputs;
}

}  // namespace staticllm::mil

#include "mil/planner.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <unordered_map>

#include "mil/attention_fusion.h"
#include "mil/control_flow.h"
#include "mil/ops/attention_split.h"
#include "mil/plan_context.h"
#include "mil/thread_pool.h"
#include "staticllm/errors.h"

namespace staticllm::mil {

namespace {

constexpr size_t kAlign = 64;

// Working memory a method may need (arena, scratch, folded constants):
// STATICLLM_MAX_MEMORY_MB, else the machine's physical memory. A program
// asking for more fails to load with a BundleError instead of being killed
// by the OOM killer half-way (a shape constant in program.json can ask for
// terabytes).
size_t memory_limit() {
  static const size_t limit = [] {
    const char* env = std::getenv("STATICLLM_MAX_MEMORY_MB");
    char* end = nullptr;
    unsigned long long mb = env != nullptr ? std::strtoull(env, &end, 10) : 0;
    if (mb > 0 && *end == '\0') return static_cast<size_t>(std::min<unsigned long long>(mb, 1ull << 40) << 20);
    long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : SIZE_MAX;
  }();
  return limit;
}

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
size_t value_bytes(const PlanValue& v) {
  return static_cast<size_t>(shape_numel(v.type.shape)) * dtype_size(v.type.dtype);
}

// The builder of an op; UnsupportedOpError naming the supported ones when
// the interpreter has none.
const OpBuilder& find_builder(const OpDecl& op, const std::string& where) {
  if (!op.blocks.empty()) {
    throw UnsupportedOpError(where +
                             ": ops with nested blocks (control flow) are not supported by the portable interpreter");
  }
  const OpBuilder* builder = OpRegistry::instance().find(op.type);
  if (builder == nullptr || op.unparsed) {
    std::string known;
    for (const auto& t : OpRegistry::instance().op_types()) known += (known.empty() ? "" : ", ") + t;
    throw UnsupportedOpError(where + ": op not supported by the portable interpreter; supported: " + known);
  }
  return *builder;
}

std::string op_where(const FunctionDecl& fn, const OpDecl& op) {
  return "function '" + fn.name + "', op '" + op.name + "' (type '" + op.type + "')";
}

// First-fit allocator over free blocks, used only while planning.
class ArenaPlanner {
 public:
  size_t allocate(size_t bytes) {
    bytes = align_up(std::max<size_t>(bytes, 1));
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < bytes) continue;
      size_t off = it->first;
      if (it->second == bytes) {
        free_.erase(it);
      } else {
        it->first += bytes;
        it->second -= bytes;
      }
      return off;
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
      if (!merged.empty() && merged.back().first + merged.back().second == b.first)
        merged.back().second += b.second;
      else
        merged.push_back(b);
    }
    free_ = std::move(merged);
  }
  size_t size() const { return end_; }

 private:
  std::vector<std::pair<size_t, size_t>> free_;  // (offset, bytes), sorted
  size_t end_ = 0;
};

class Planner {
 public:
  // `outer`: when planning a nested block, the constants of the scopes
  // around it it may read by name (control_flow.h).
  Planner(const FunctionDecl& fn, const MethodMetadata& m, ConstPool* pool, const PlanFor& plan_for,
          const std::vector<NamedConstant>* outer = nullptr)
      : fn_(fn), method_(m), for_(plan_for), pool_(pool != nullptr ? pool : &own_pool_), outer_(outer) {
    plan_ = std::make_shared<Plan>();
    plan_->where = "method '" + m.name + "' (function '" + fn.name + "')";
  }

  std::shared_ptr<const Plan> run() {
    if (outer_ != nullptr) {
      for (const NamedConstant& c : *outer_) {
        by_name_[c.name] = constant_value(c.name, ConstValue{false, {}, c.value, {}}, {});
        values()[by_name_[c.name]].type = c.type;  // a list stays one
      }
    }
    bind_inputs();
    if (!fusion_disabled()) fusion_.emplace(fn_);
    for (const OpDecl& op : fn_.ops) {
      plan_op(op);
      if (fusion_) fuse_attention(op);
    }
    drop_fused_steps();
    bind_outputs();
    layout_arena();
    return plan_;
  }

 private:
  std::vector<PlanValue>& values() { return plan_->values; }

  int add_value(PlanValue v) {
    values().push_back(std::move(v));
    return static_cast<int>(values().size()) - 1;
  }

  static std::vector<TensorSpec> inputs_then_states(const MethodMetadata& m) {
    std::vector<TensorSpec> all = m.inputs;
    all.insert(all.end(), m.states.begin(), m.states.end());
    return all;
  }

  // The metadata's input or state against the program's declaration: a
  // dimension the program leaves open may be anything in the metadata, a
  // fixed one must be the same (and a state is fixed in both).
  void check_spec(const char* kind, const TensorSpec& spec, const ValueType& program) const {
    bool same = spec.dtype == program.dtype && !spec.any_rank && spec.shape.size() == program.shape.size();
    for (size_t i = 0; same && i < spec.shape.size(); ++i) {
      same = program.shape[i] == spec.shape[i] || program.shape[i] == kFlexibleDim;
    }
    if (same) return;
    throw BundleError(plan_->where + ": metadata " + kind + " '" + spec.name + "' is " + spec.allowed() +
                      " but the program declares " + type_string(program));
  }

  // The type a function input has in this plan: the call's shape, or the
  // metadata's fixed or default one.
  ValueType input_type(const TensorSpec& spec, size_t pos) const {
    ValueType t{spec.dtype, spec.planning_shape()};
    if (for_.input_values != nullptr && pos < for_.input_values->size()) t.shape = (*for_.input_values)[pos].shape();
    if (pos < for_.input_shapes.size()) t.shape = for_.input_shapes[pos];
    return t;
  }

  // Function inputs, in the caller's order (metadata inputs, then states).
  void bind_inputs() {
    std::vector<TensorSpec> caller = inputs_then_states(method_);
    for (const ValueDecl& in : fn_.inputs) {
      if (in.is_string) throw BundleError(plan_->where + ": program input '" + in.name + "' is a string");
      auto pos = std::find_if(caller.begin(), caller.end(), [&](const TensorSpec& s) { return s.name == in.name; });
      if (pos == caller.end()) {
        throw BundleError(plan_->where + ": program input '" + in.name + "' is not in the method's metadata");
      }
      bool meta_state = pos - caller.begin() >= static_cast<long>(method_.inputs.size());
      if (meta_state != in.is_state) {
        throw BundleError(plan_->where + ": '" + in.name + "' is " + (in.is_state ? "a state" : "an input") +
                          " in the program but " + (meta_state ? "a state" : "an input") + " in the metadata");
      }
      check_spec(in.is_state ? "state" : "input", *pos, in.type);
      PlanValue v;
      v.name = in.name;
      v.input_index = static_cast<int>(pos - caller.begin());
      v.type = input_type(*pos, static_cast<size_t>(v.input_index));
      v.type.is_list = in.type.is_list;  // a block's loop variable (the metadata has no lists)
      v.type.dynamic_length = in.type.dynamic_length;
      v.is_state = in.is_state;
      if (!in.is_state && for_.input_values != nullptr) {
        v.is_const = true;  // the eager path
        v.constant = (*for_.input_values)[static_cast<size_t>(v.input_index)];
      }
      by_name_[in.name] = add_value(std::move(v));
    }
    for (const TensorSpec& spec : caller) {
      auto it = by_name_.find(spec.name);
      if (it == by_name_.end()) {
        throw BundleError(plan_->where + ": metadata input '" + spec.name + "' is not an input of the program");
      }
      plan_->input_values.push_back(it->second);
    }
  }

  int constant_value(const std::string& name, const ConstValue& c, const ValueType& declared) {
    PlanValue v;
    v.name = name;
    v.is_const = true;
    if (c.packed) return packed_constant(std::move(v), c.packed);
    v.is_string = c.is_string;
    v.string_val = c.str;
    v.constant = c.tensor;
    v.type = c.is_string ? declared : ValueType{c.tensor.dtype(), c.tensor.shape()};
    return add_value(std::move(v));
  }

  std::map<std::string, std::vector<int>> bind_params(const OpDecl& op, const std::string& where) {
    std::map<std::string, std::vector<int>> params;
    for (const auto& [param, bindings] : op.inputs) {
      for (const Binding& b : bindings) {
        if (b.value) {
          params[param].push_back(constant_value(op.name + "." + param, *b.value, {}));
          continue;
        }
        auto it = by_name_.find(b.name);
        if (it == by_name_.end())
          throw BundleError(where + ": input '" + param + "' refers to unknown value '" + b.name + "'");
        params[param].push_back(it->second);
      }
    }
    return params;
  }

  void check_outputs(const OpDecl& op, const PlannedOp& planned, const std::string& where) const {
    if (planned.outputs.size() != op.outputs.size()) {
      throw BundleError(where + ": the kernel produces " + std::to_string(planned.outputs.size()) +
                        " outputs, the program declares " + std::to_string(op.outputs.size()));
    }
    for (size_t i = 0; i < planned.outputs.size(); ++i) {
      const ValueType& got = planned.outputs[i];
      const ValueType& want = op.outputs[i].type;
      // a builder that took the program's open declaration as its shape
      if (std::any_of(got.shape.begin(), got.shape.end(), [](int64_t d) { return d < 0; })) {
        throw RuntimeValueNeeded(where + ": output '" + op.outputs[i].name + "' has a shape known only at run time");
      }
      if (!fits_declared(want, got)) {
        throw BundleError(where + ": output '" + op.outputs[i].name + "' is declared " + type_string(want) +
                          " but the op computes " + type_string(got));
      }
    }
  }

  // What identifies a constant across the functions of a bundle: big tensors
  // by address (blobs of the shared weight mapping; every pool entry keeps
  // its inputs alive, so an address is never reused), small ones by content.
  std::string value_key(int id) const {
    const PlanValue& v = plan_->values[id];
    // a run-time value by its place and type: plans of one function for
    // other input shapes fold other constants from it (its shape, say)
    if (!v.is_const) return "v" + std::to_string(id) + type_string(v.type) + "@" + plan_->where;
    if (v.is_string) return "s" + std::to_string(v.string_val.size()) + ":" + v.string_val;
    if (v.lazy)
      return "l" + std::to_string(reinterpret_cast<uintptr_t>(v.lazy.get())) + "#" + std::to_string(v.lazy_index);
    std::string key = std::string(dtype_name(v.type.dtype)) + shape_to_string(v.type.shape);
    const Tensor& t = v.constant;
    if (t.nbytes() > 256) return key + "@" + std::to_string(reinterpret_cast<uintptr_t>(t.data()));
    return key + "=" + std::string(static_cast<const char*>(t.data()), t.nbytes());
  }

  // The dense tensor of a constant, made now if it is lazy. `reader` names
  // the op that needs it: with STATICLLM_PROFILE set, expanding a weight the
  // kernels could have read compressed is reported (it costs memory).
  const Tensor& ensure_dense(int id, const std::string& reader) {
    PlanValue& v = values()[id];
    if (!v.lazy) return v.constant;
    bool compressed = v.lazy_index < v.lazy->compressed.size() && v.lazy->compressed[v.lazy_index];
    if (compressed && !v.lazy->made() && std::getenv("STATICLLM_PROFILE") != nullptr) {
      std::fprintf(stderr, "staticllm: %s: compressed constant '%s' (%s) expanded for %s\n", plan_->where.c_str(),
                   v.name.c_str(), type_string(v.type).c_str(), reader.c_str());
    }
    if (!v.lazy->made()) reserve(value_bytes(v), plan_->where);
    v.constant = v.lazy->get(v.lazy_index);
    return v.constant;
  }

  int packed_constant(PlanValue v, const std::shared_ptr<const PackedInts>& packed) {
    v.type = ValueType{packed->is_signed ? DType::kInt8 : DType::kUInt8, packed->shape};
    std::string key = "packed" + std::to_string(packed->bits) + (packed->is_signed ? "s" : "u") +
                      shape_to_string(packed->shape) + "@" +
                      std::to_string(reinterpret_cast<uintptr_t>(packed->bytes.data()));
    v.lazy = pool_->find_or_add(key, [&] {
      auto lazy = std::make_shared<LazyConsts>([packed] { return std::vector<Tensor>{packed->unpack()}; });
      lazy->packed = packed;
      return lazy;
    });
    return add_value(std::move(v));
  }

  // All inputs known now: the op's results become constants, shared through
  // the pool with every function that folds the same op over the same
  // constants. A decompression the kernels read as stored stays compressed
  // until some op needs it dense; everything else is evaluated at once.
  void fold(const OpDecl& op, PlannedOp& planned, const std::map<std::string, std::vector<int>>& params,
            const std::vector<int>& ins, const std::vector<int>& outs, const std::string& where) {
    std::string key = op.type + "(";
    std::vector<std::pair<Tensor, std::shared_ptr<LazyConsts>>> keep;  // keeps the keyed addresses alive
    for (const auto& [param, ids] : params) {
      key += param + "=";
      for (int id : ids) {
        key += value_key(id) + ";";
        keep.push_back({values()[id].constant, values()[id].lazy});
      }
    }
    key += ")";
    std::vector<ValueType> out_types;
    for (int id : outs) out_types.push_back(values()[id].type);
    std::shared_ptr<const CompressedWeight> compressed = planned.compressed;
    std::shared_ptr<LazyConsts> lazy = pool_->find_or_add(key, [&] {
      std::vector<Tensor> args;  // a compressed result is made from the weight, not the op's inputs
      if (!compressed) {
        for (int id : ins) args.push_back(ensure_dense(id, where));
      }
      auto make = [run = planned.run, args, out_types, scratch_bytes = planned.scratch_bytes, where, compressed,
                   keep]() {
        try {
          if (compressed) return std::vector<Tensor>{materialize_compressed(*compressed)};
          std::vector<const Tensor*> in_ptrs;
          for (const Tensor& t : args) in_ptrs.push_back(&t);
          std::vector<Tensor> results;
          for (const ValueType& t : out_types) results.emplace_back(t.dtype, t.shape);
          std::vector<Tensor*> out_ptrs;
          for (auto& t : results) out_ptrs.push_back(&t);
          Tensor scratch(DType::kUInt8, {static_cast<int64_t>(scratch_bytes)});
          KernelCall call{in_ptrs.data(), out_ptrs.data(), &default_thread_pool(), scratch.data()};
          run(call);
          return results;
        } catch (const StaticLLMError&) {
          throw;
        } catch (const std::exception& e) {
          throw BundleError(where + ": evaluating this op on its constant inputs failed: " + e.what());
        }
      };
      auto entry = std::make_shared<LazyConsts>(std::move(make));
      entry->compressed.assign(outs.size(), nullptr);
      if (!entry->compressed.empty()) entry->compressed[0] = compressed;
      return entry;
    });
    for (size_t i = 0; i < outs.size(); ++i) {
      PlanValue& v = values()[outs[i]];
      v.is_const = true;
      v.lazy = lazy;
      v.lazy_index = i;
    }
    if (compressed) return;
    if (!lazy->made()) {
      size_t bytes = planned.scratch_bytes;
      for (int id : outs) bytes += value_bytes(values()[id]);
      reserve(bytes, where);
    }
    for (int id : outs) values()[id].constant = lazy->get(values()[id].lazy_index);
  }

  // The outputs of an op that computed them while planned: constants.
  void take_results(const std::vector<Tensor>& results, const std::vector<int>& outs, const std::string& where) {
    for (size_t i = 0; i < outs.size(); ++i) {
      PlanValue& v = values()[outs[i]];
      reserve(value_bytes(v), where);
      v.is_const = true;
      v.constant = results[i];
    }
  }

  // Counts `bytes` more of working memory; BundleError past memory_limit().
  void reserve(size_t bytes, const std::string& where) {
    held_ += bytes;
    if (held_ <= memory_limit()) return;
    throw BundleError(where + ": the method needs " + std::to_string(held_ >> 20) +
                      " MB of working memory by here, more than the limit of " + std::to_string(memory_limit() >> 20) +
                      " MB (the machine's memory; STATICLLM_MAX_MEMORY_MB sets another)");
  }

  // The value owning the bytes a reshape-like op or contiguous slice could
  // share (and where they start in it), or -1.
  int alias_root(const PlannedOp& planned, const std::vector<int>& ins, const std::vector<int>& outs,
                 int64_t* offset) const {
    const bool view = planned.view_offset >= 0;
    if (!(planned.byte_copy || view) || ins.size() != 1 || outs.size() != 1) return -1;
    const PlanValue& in = plan_->values[ins[0]];
    const PlanValue& out = plan_->values[outs[0]];
    if (in.is_const || in.is_state || in.type.dtype != out.type.dtype) return -1;
    const int64_t start = view ? planned.view_offset : 0;
    const int64_t in_bytes = static_cast<int64_t>(value_bytes(in)), out_bytes = static_cast<int64_t>(value_bytes(out));
    if (view ? start > in_bytes - out_bytes : in_bytes != out_bytes) return -1;
    *offset = in.alias_offset + start;
    return in.alias_of >= 0 ? in.alias_of : ins[0];
  }

  void plan_op(const OpDecl& op) {
    std::string where = op_where(fn_, op);
    if (op.type == "const") {
      ValueType declared = op.outputs.empty() ? ValueType{} : op.outputs[0].type;
      by_name_[op.name] = constant_value(op.name, *op.const_val, declared);
      return;
    }
    const bool control_flow = is_control_flow_op(op.type) && !op.blocks.empty() && !op.unparsed;
    const OpBuilder* builder = control_flow ? nullptr : &find_builder(op, where);
    std::vector<ValueType> declared;
    for (const auto& o : op.outputs) declared.push_back(o.type);
    std::map<std::string, std::vector<int>> params = bind_params(op, where);
    const std::vector<std::string> outer = control_flow ? outer_names(op) : std::vector<std::string>{};
    for (const std::string& name : outer) params[kOuterParam].push_back(value_id(name, where));
    PlanContext ctx(where, op, values(), params, declared, fn_.ios_opset);
    PlannedOp planned;
    try {
      planned = control_flow ? plan_control_flow(ctx, op, fn_.name, outer, block_planner()) : (*builder)(ctx);
    } catch (const StaticLLMError&) {
      throw;
    } catch (const std::exception& e) {
      throw BundleError(where + ": " + e.what());
    }
    check_outputs(op, planned, where);
    std::vector<int> outs;
    for (size_t i = 0; i < op.outputs.size(); ++i) {
      const ValueDecl& o = op.outputs[i];
      PlanValue v;
      v.name = o.name;
      v.type = planned.outputs[i];  // the declared type, with its open dimensions fixed
      outs.push_back(add_value(std::move(v)));
      by_name_[o.name] = outs.back();
    }
    if (!planned.results.empty()) {
      take_results(planned.results, outs, where);
      return;
    }
    const std::vector<int>& ins = ctx.inputs();
    // (a loop is not run at load: it may never end)
    if (!control_flow && std::all_of(ins.begin(), ins.end(), [&](int id) { return values()[id].is_const; })) {
      fold(op, planned, params, ins, outs, where);
      return;
    }
    for (int id : ins) ensure_dense(id, where);
    int64_t offset = 0;
    int root = alias_root(planned, ins, outs, &offset);
    if (root >= 0) {
      values()[outs[0]].alias_of = root;
      values()[outs[0]].alias_offset = offset;
      return;
    }
    step_of_[op.name] = plan_->steps.size();
    plan_->steps.push_back({op.name, op.type, std::move(planned.run), ins, outs, planned.scratch_bytes});
  }

  // A constant parameter as the fusion matcher reads it; null otherwise.
  const Tensor* constant_of(const Binding& b) const {
    if (b.value) return b.value->is_string || b.value->packed ? nullptr : &b.value->tensor;
    auto it = by_name_.find(b.name);
    if (it == by_name_.end()) return nullptr;
    const PlanValue& v = plan_->values[it->second];
    // (a compressed weight not yet expanded has no dense tensor: never a parameter)
    return v.is_const && !v.is_string && v.constant.defined() ? &v.constant : nullptr;
  }

  // After `op` is planned: when it ends a split-key attention
  // (attention_fusion.h) whose ops all became steps on run-time values,
  // those steps give way to one fused step.
  void fuse_attention(const OpDecl& op) {
    auto m = fusion_->match(op, [this](const Binding& b) { return constant_of(b); });
    if (!m) return;
    std::vector<size_t> steps;
    for (const std::string& name : m->ops) {
      auto v = by_name_.find(name);
      if (v == by_name_.end() || values()[v->second].is_const) return;
      auto s = step_of_.find(name);
      if (s != step_of_.end())
        steps.push_back(s->second);
      else if (values()[v->second].alias_of < 0)
        return;  // neither a step nor a view
    }
    auto id = [&](const std::string& name) { return by_name_.at(name); };
    const int out = id(op.name);
    SplitAttentionTypes t;
    t.q = values()[id(m->q)].type;
    for (int part = 0; part < 2; ++part) {
      t.k[part] = values()[id(m->k[part])].type;
      t.v[part] = values()[id(m->v[part])].type;
    }
    t.mask = values()[id(m->mask)].type;
    t.scores = values()[id(m->scores)].type;
    t.scale = m->scale;
    t.split = m->split;
    std::optional<PlannedOp> fused = plan_split_attention(t);
    if (!fused || fused->outputs[0].shape != values()[out].type.shape ||
        fused->outputs[0].dtype != values()[out].type.dtype)
      return;
    std::vector<int> ins;
    for (const std::string& name : {m->q, m->k[0], m->k[1], m->v[0], m->v[1], m->mask}) {
      ensure_dense(id(name), op_where(fn_, op));
      ins.push_back(id(name));
    }
    for (size_t s : steps) dropped_.push_back(s);
    step_of_[op.name] = plan_->steps.size();
    plan_->steps.push_back({op.name, "split_kv_attention", std::move(fused->run), ins, {out}, fused->scratch_bytes});
  }

  // Removes the steps fused steps replaced (their values are then never placed).
  void drop_fused_steps() {
    if (dropped_.empty()) return;
    std::sort(dropped_.begin(), dropped_.end());
    std::vector<PlanStep> kept;
    size_t d = 0;
    for (size_t s = 0; s < plan_->steps.size(); ++s) {
      if (d < dropped_.size() && dropped_[d] == s) {
        ++d;
        continue;
      }
      kept.push_back(std::move(plan_->steps[s]));
    }
    plan_->steps = std::move(kept);
  }

  // Metadata outputs (in order) must be program outputs.
  void bind_outputs() {
    for (const TensorSpec& spec : method_.outputs) {
      auto it = by_name_.find(spec.name);
      if (std::find(fn_.outputs.begin(), fn_.outputs.end(), spec.name) == fn_.outputs.end() || it == by_name_.end()) {
        throw BundleError(plan_->where + ": metadata output '" + spec.name + "' is not an output of the program");
      }
      if (values()[it->second].is_const) ensure_dense(it->second, "output '" + spec.name + "'");
      const PlanValue& v = values()[it->second];
      if (v.is_string) throw BundleError(plan_->where + ": output '" + spec.name + "' is a string");
      // A block's output types are what it computes (outer_ set): nothing to check against.
      if (outer_ == nullptr && (v.type.dtype != spec.dtype || !spec.accepts(v.type.shape))) {
        throw BundleError(plan_->where + ": metadata output '" + spec.name + "' is " + spec.allowed() +
                          " but the program declares " + type_string(v.type));
      }
      plan_->output_values.push_back(it->second);
    }
  }

  // Liveness: a run-time value lives from its defining step to its last
  // reader (through its aliases too); function outputs live to the end. Values are placed first-fit in one arena and
  // their space reused.
  void layout_arena() {
    auto& vals = values();
    const int n_steps = static_cast<int>(plan_->steps.size());
    std::vector<int> end(vals.size(), -1);
    for (int s = 0; s < n_steps; ++s) {
      for (int id : plan_->steps[s].outputs) end[id] = s;  // unused outputs die at once
      for (int id : plan_->steps[s].inputs) end[id] = std::max(end[id], s);
    }
    for (int id : plan_->output_values) end[id] = n_steps;
    for (size_t id = 0; id < vals.size(); ++id) {
      if (vals[id].alias_of >= 0) end[vals[id].alias_of] = std::max(end[vals[id].alias_of], end[id]);
    }
    ArenaPlanner arena;  // inputs and states stay in the caller's buffers
    std::vector<std::vector<int>> frees(n_steps);
    for (size_t id = 0; id < vals.size(); ++id) {
      bool in_arena = !vals[id].is_const && vals[id].input_index < 0 && vals[id].alias_of < 0;
      if (in_arena && end[id] >= 0 && end[id] < n_steps) frees[end[id]].push_back(static_cast<int>(id));
    }
    for (int s = 0; s < n_steps; ++s) {
      for (int id : plan_->steps[s].outputs)
        vals[id].offset = static_cast<int64_t>(arena.allocate(value_bytes(vals[id])));
      // after the outputs are placed, so no output overlaps an input of its step
      for (int id : frees[s]) arena.release(static_cast<size_t>(vals[id].offset), value_bytes(vals[id]));
      plan_->scratch_bytes = std::max(plan_->scratch_bytes, plan_->steps[s].scratch);
    }
    for (auto& v : vals) {
      if (v.alias_of < 0) continue;
      const int64_t root = vals[v.alias_of].offset;  // -1 when the root is a caller's input
      v.offset = root < 0 ? -1 : root + v.alias_offset;
    }
    plan_->arena_bytes = arena.size();
    reserve(plan_->arena_bytes + plan_->scratch_bytes, plan_->where);
  }

  const FunctionDecl& fn_;
  const MethodMetadata& method_;
  const PlanFor& for_;
  std::shared_ptr<Plan> plan_;
  std::unordered_map<std::string, int> by_name_;
  size_t held_ = 0;     // bytes of folded constants (and, at the end, arena and scratch)
  ConstPool own_pool_;  // when the caller shares none
  ConstPool* pool_;
  const std::vector<NamedConstant>* outer_;
  std::optional<AttentionFusion> fusion_;            // unset: STATICLLM_NO_FUSION
  std::unordered_map<std::string, size_t> step_of_;  // op name -> its step
  std::vector<size_t> dropped_;                      // steps fused steps replaced

  // The id of a value the op's blocks read from this scope.
  int value_id(const std::string& name, const std::string& where) const {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) throw BundleError(where + ": a block reads unknown value '" + name + "'");
    return it->second;
  }

  // Nested blocks are planned by planners of their own (fixed shapes), sharing the pool.
  BlockPlanner block_planner() {
    return [this](const FunctionDecl& fn, const MethodMetadata& m, const std::vector<NamedConstant>& constants,
                  bool share_pool) {
      const PlanFor fixed;
      return Planner(fn, m, share_pool ? pool_ : nullptr, fixed, &constants).run();
    };
  }
};

}  // namespace

namespace {

// Unsupported ops anywhere in `ops`, nested blocks included.
void check_ops_supported(const FunctionDecl& fn, const std::vector<OpDecl>& ops) {
  for (const OpDecl& op : ops) {
    if (op.type == "const") continue;
    if (is_control_flow_op(op.type) && !op.blocks.empty() && !op.unparsed) {
      for (const BlockDecl& block : op.blocks) check_ops_supported(fn, block.ops);
      continue;
    }
    find_builder(op, op_where(fn, op));
  }
}

}  // namespace

void check_ops_supported(const FunctionDecl& fn) { check_ops_supported(fn, fn.ops); }

std::shared_ptr<const Plan> plan_function(const FunctionDecl& fn, const MethodMetadata& method, ConstPool* pool,
                                          const PlanFor& plan_for) {
  return Planner(fn, method, pool, plan_for).run();
}

}  // namespace staticllm::mil

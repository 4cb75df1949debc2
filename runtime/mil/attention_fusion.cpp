#include "mil/attention_fusion.h"

#include <cstdlib>
#include <cstring>

#include "mil/ops/elementwise_util.h"

namespace staticllm::mil {

namespace {

using ConstantOf = AttentionFusion::ConstantOf;

// The one named argument of `param`; "" when absent, several or inline.
std::string arg(const OpDecl& op, const char* param) {
  auto it = op.inputs.find(param);
  if (it == op.inputs.end() || it->second.size() != 1 || it->second[0].value) return "";
  return it->second[0].name;
}

// A constant parameter's elements as doubles: `absent` when the op lacks it,
// nullopt when it is not a constant.
std::optional<std::vector<double>> values(const OpDecl& op, const char* param, const ConstantOf& constant,
                                          std::vector<double> absent) {
  auto it = op.inputs.find(param);
  if (it == op.inputs.end()) return absent;
  if (it->second.size() != 1) return std::nullopt;
  const Tensor* t = constant(it->second[0]);
  // (the parameters the pattern reads are scalars and per-axis vectors)
  if (t == nullptr || t->numel() > 16) return std::nullopt;
  std::vector<double> out(static_cast<size_t>(t->numel()));
  for (int64_t i = 0; i < t->numel(); ++i) out[static_cast<size_t>(i)] = load_one(t->dtype(), t->data(), i);
  return out;
}

// Whether a scalar parameter is the constant `want` (`absent` when the op lacks it).
bool scalar_is(const OpDecl& op, const char* param, const ConstantOf& constant, double want, double absent) {
  auto v = values(op, param, constant, {absent});
  return v && v->size() == 1 && (*v)[0] == want;
}

// Whether `op`'s constant `axis` names the last axis of its (declared) output.
bool on_last_axis(const OpDecl& op, const ConstantOf& constant) {
  if (op.outputs.size() != 1) return false;
  const Shape& s = op.outputs[0].type.shape;
  if (s.empty() || s[0] == kAnyRank) return false;
  const double last = static_cast<double>(s.size()) - 1;
  return scalar_is(op, "axis", constant, -1, -1) || scalar_is(op, "axis", constant, last, -1);
}

bool all_equal(const std::optional<std::vector<double>>& v, double want) {
  if (!v) return false;
  for (double x : *v)
    if (x != want) return false;
  return true;
}

// The start of a unit-stride slice_by_index on the last axis, -1 for any
// other slice (a stride, a squeeze, an offset on another axis).
int64_t slice_start(const OpDecl& op, const ConstantOf& constant) {
  auto begin = values(op, "begin", constant, {});
  if (!begin || begin->empty()) return -1;
  const size_t n = begin->size();
  auto begin_mask = values(op, "begin_mask", constant, std::vector<double>(n, 0));
  if (!all_equal(values(op, "stride", constant, std::vector<double>(n, 1)), 1) ||
      !all_equal(values(op, "squeeze_mask", constant, std::vector<double>(n, 0)), 0) || !begin_mask ||
      begin_mask->size() != n) {
    return -1;
  }
  for (size_t i = 0; i + 1 < n; ++i)
    if ((*begin)[i] != 0 && (*begin_mask)[i] == 0) return -1;
  const double start = (*begin_mask)[n - 1] != 0 ? 0 : (*begin)[n - 1];
  return start >= 0 ? static_cast<int64_t>(start) : -1;
}

void count_uses(const std::vector<OpDecl>& ops, std::map<std::string, int>& uses) {
  for (const OpDecl& op : ops) {
    for (const auto& [param, bindings] : op.inputs)
      for (const Binding& b : bindings)
        if (!b.value) ++uses[b.name];
    for (const BlockDecl& block : op.blocks) {
      count_uses(block.ops, uses);
      for (const std::string& name : block.outputs) ++uses[name];
    }
  }
}

}  // namespace

bool fusion_disabled() {
  const char* env = std::getenv("STATICLLM_NO_FUSION");
  return env != nullptr && std::strcmp(env, "0") != 0;
}

AttentionFusion::AttentionFusion(const FunctionDecl& fn) {
  for (const OpDecl& op : fn.ops)
    for (const ValueDecl& out : op.outputs) producer_[out.name] = &op;
  count_uses(fn.ops, uses_);
  for (const std::string& name : fn.outputs) ++uses_[name];
}

const OpDecl* AttentionFusion::producer(const std::string& name, const char* type) const {
  auto it = producer_.find(name);
  if (it == producer_.end() || it->second->type != type || it->second->outputs.size() != 1) return nullptr;
  return it->second;
}

bool AttentionFusion::used_once(const std::string& name) const {
  auto it = uses_.find(name);
  return !name.empty() && it != uses_.end() && it->second == 1;
}

std::optional<SplitAttentionMatch> AttentionFusion::match(const OpDecl& add, const ConstantOf& constant) const {
  if (add.type != "add" || add.outputs.size() != 1) return std::nullopt;
  SplitAttentionMatch m;
  m.ops.push_back(add.name);
  // out = pv0 + pv1, pv = matmul(slice of p, v)
  std::string probs;
  for (const char* side : {"x", "y"}) {
    const std::string pv_name = arg(add, side);
    const OpDecl* pv = producer(pv_name, "matmul");
    if (pv == nullptr || !used_once(pv_name) || !scalar_is(*pv, "transpose_x", constant, 0, 0) ||
        !scalar_is(*pv, "transpose_y", constant, 0, 0))
      return std::nullopt;
    const std::string slice_name = arg(*pv, "x");
    const OpDecl* slice = producer(slice_name, "slice_by_index");
    if (slice == nullptr || !used_once(slice_name) || arg(*pv, "y").empty()) return std::nullopt;
    const int64_t start = slice_start(*slice, constant);
    if (start < 0) return std::nullopt;
    const int part = start == 0 ? 0 : 1;
    if (!m.v[part].empty()) return std::nullopt;  // both slices start at 0
    m.v[part] = arg(*pv, "y");
    if (part == 1) m.split = start;
    if (!probs.empty() && probs != arg(*slice, "x")) return std::nullopt;
    probs = arg(*slice, "x");
    m.ops.insert(m.ops.end(), {pv->name, slice->name});
  }
  auto uses = uses_.find(probs);
  if (uses == uses_.end() || uses->second != 2) return std::nullopt;
  // p = reshape?(softmax(s))
  std::string soft_name = probs;
  if (const OpDecl* r = producer(probs, "reshape")) {
    soft_name = arg(*r, "x");
    if (!used_once(soft_name)) return std::nullopt;
    m.ops.push_back(r->name);
  }
  const OpDecl* soft = producer(soft_name, "softmax");
  if (soft == nullptr || !on_last_axis(*soft, constant)) return std::nullopt;
  const std::string masked_name = arg(*soft, "x");
  const OpDecl* masked = producer(masked_name, "add");
  if (masked == nullptr || !used_once(masked_name)) return std::nullopt;
  m.ops.insert(m.ops.end(), {soft->name, masked->name});
  // s = reshape?(mul(concat, scale)) + mask, either operand order
  const OpDecl* scaled = nullptr;
  for (const auto& [side, other] : {std::pair{"x", "y"}, std::pair{"y", "x"}}) {
    std::string name = arg(*masked, side);
    const OpDecl* r = producer(name, "reshape");
    std::string mul_name = r != nullptr ? arg(*r, "x") : name;
    if (!used_once(name) || !used_once(mul_name) || producer(mul_name, "mul") == nullptr || arg(*masked, other).empty())
      continue;
    scaled = producer(mul_name, "mul");
    m.scores = name;
    m.mask = arg(*masked, other);
    if (r != nullptr) m.ops.push_back(r->name);
    break;
  }
  if (scaled == nullptr) return std::nullopt;
  m.ops.push_back(scaled->name);
  std::string concat_name;
  for (const auto& [side, other] : {std::pair{"x", "y"}, std::pair{"y", "x"}}) {
    auto scale = values(*scaled, other, constant, {});
    if (!scale || scale->size() != 1 || producer(arg(*scaled, side), "concat") == nullptr) continue;
    concat_name = arg(*scaled, side);
    m.scale = static_cast<float>((*scale)[0]);
  }
  const OpDecl* concat = producer(concat_name, "concat");
  if (concat == nullptr || !used_once(concat_name) || !on_last_axis(*concat, constant) ||
      !scalar_is(*concat, "interleave", constant, 0, 0))
    return std::nullopt;
  auto parts = concat->inputs.find("values");
  if (parts == concat->inputs.end() || parts->second.size() != 2) return std::nullopt;
  m.ops.push_back(concat->name);
  // the scores: matmul(q, k, transpose_y) for each part, the same q
  for (int part = 0; part < 2; ++part) {
    const Binding& b = parts->second[static_cast<size_t>(part)];
    const OpDecl* qk = b.value ? nullptr : producer(b.name, "matmul");
    if (qk == nullptr || !used_once(b.name) || !scalar_is(*qk, "transpose_x", constant, 0, 0) ||
        !scalar_is(*qk, "transpose_y", constant, 1, 0) || arg(*qk, "x").empty() || arg(*qk, "y").empty())
      return std::nullopt;
    if (part == 1 && arg(*qk, "x") != m.q) return std::nullopt;
    m.q = arg(*qk, "x");
    m.k[part] = arg(*qk, "y");
    m.ops.push_back(qk->name);
  }
  return m;
}

}  // namespace staticllm::mil

// The OpPlanContext the planner hands to a builder: parameters resolved to
// plan values, with the slots the kernel reads recorded in call order.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "mil/op.h"
#include "mil/planner.h"
#include "staticllm/errors.h"

namespace staticllm::mil {

class PlanContext : public OpPlanContext {
 public:
  PlanContext(std::string where, const OpDecl& op, const std::vector<PlanValue>& values,
              std::map<std::string, std::vector<int>> params, std::vector<ValueType> declared, int ios_opset)
      : where_(std::move(where)),
        op_(op),
        values_(values),
        params_(std::move(params)),
        declared_(std::move(declared)),
        ios_opset_(ios_opset) {}

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
    if (!v.is_const || v.is_string) return nullptr;
    return v.lazy ? &v.lazy->get(v.lazy_index) : &v.constant;
  }
  std::shared_ptr<const CompressedWeight> compressed(const std::string& p, size_t i) const override {
    const PlanValue& v = values_[id(p, i)];
    return v.lazy && v.lazy_index < v.lazy->compressed.size() ? v.lazy->compressed[v.lazy_index] : nullptr;
  }
  const PackedInts* packed(const std::string& p, size_t i) const override {
    const PlanValue& v = values_[id(p, i)];
    return v.lazy ? v.lazy->packed.get() : nullptr;
  }
  int input(const std::string& p, size_t i) override {
    // a string constant has no tensor for a kernel to read (found by fuzzing:
    // a const op whose value became a string fed an add)
    if (values_[id(p, i)].is_string) fail("parameter '" + p + "' is a string; expected a tensor");
    inputs_.push_back(id(p, i));
    return static_cast<int>(inputs_.size()) - 1;
  }
  const std::vector<ValueType>& declared_outputs() const override { return declared_; }
  [[noreturn]] void fail(const std::string& message) const override { throw BundleError(where_ + ": " + message); }
  [[noreturn]] void fail_run_time(const std::string& message) const override {
    throw RuntimeValueNeeded(where_ + ": " + message);
  }
  bool is_run_time(const std::string& p, size_t i) const override {
    const PlanValue& v = values_[id(p, i)];
    return !v.is_const && !v.is_string;
  }
  std::string const_string(const std::string& p) const override {
    const PlanValue& v = values_[id(p, 0)];
    if (!v.is_string || !v.is_const) fail("parameter '" + p + "' must be a constant string");
    return v.string_val;
  }

  int ios_opset() const override { return ios_opset_; }

  // Value ids the kernel reads, by slot.
  const std::vector<int>& inputs() const { return inputs_; }

 private:
  int id(const std::string& p, size_t i) const {
    auto it = params_.find(p);
    if (it == params_.end()) fail("missing parameter '" + p + "'");
    if (i >= it->second.size()) fail("parameter '" + p + "' has no argument " + std::to_string(i));
    return it->second[i];
  }

  std::string where_;
  const OpDecl& op_;
  const std::vector<PlanValue>& values_;
  std::map<std::string, std::vector<int>> params_;
  std::vector<ValueType> declared_;
  std::vector<int> inputs_;
  int ios_opset_;
};

}  // namespace staticllm::mil

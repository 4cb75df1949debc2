#include "staticllm/state.h"

#include "staticllm/errors.h"

namespace staticllm {

namespace {

std::string names_of(const std::vector<TensorSpec>& specs) {
  std::string s;
  for (const auto& x : specs) s += (s.empty() ? "" : ", ") + x.name;
  return s.empty() ? "none" : s;
}

const TensorSpec* find(const std::vector<TensorSpec>& specs, const std::string& name) {
  for (const auto& s : specs) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

}  // namespace

State::State(uint64_t runtime_id, std::vector<TensorSpec> specs, std::unique_ptr<StateStorage> storage)
    : runtime_id_(runtime_id), specs_(std::move(specs)), storage_(std::move(storage)) {}

size_t State::index_of(const std::string& name) const {
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (specs_[i].name == name) return i;
  }
  throw InputError("the State has no state '" + name + "'; it holds: " + names_of(specs_));
}

Tensor State::read(const std::string& name) {
  size_t i = index_of(name);
  Tensor out(specs_[i].dtype, specs_[i].shape);
  std::lock_guard<std::mutex> lock(mutex_);
  storage_->read(i, out);
  return out;
}

void State::write(const std::string& name, const Tensor& value) {
  size_t i = index_of(name);
  const TensorSpec& s = specs_[i];
  if (value.dtype() != s.dtype || value.shape() != s.shape) {
    throw InputError("state '" + name + "' expects " + spec_to_string(s.dtype, s.shape) + ", got " +
                     spec_to_string(value.dtype(), value.shape()));
  }
  if (value.data() == nullptr && value.numel() > 0) throw InputError("state '" + name + "' has no data");
  std::lock_guard<std::mutex> lock(mutex_);
  storage_->write(i, value);
}

std::string state_mismatch(const std::vector<TensorSpec>& wanted, const std::vector<TensorSpec>& held) {
  for (const TensorSpec& w : wanted) {
    const TensorSpec* h = find(held, w.name);
    if (h == nullptr) return "the State has no state '" + w.name + "' (it holds: " + names_of(held) + ")";
    if (h->dtype != w.dtype || h->shape != w.shape) {
      return "state '" + w.name + "' is " + spec_to_string(h->dtype, h->shape) + " in the State, the method expects " +
             spec_to_string(w.dtype, w.shape);
    }
  }
  for (const TensorSpec& h : held) {
    if (find(wanted, h.name) == nullptr) {
      return "the State holds '" + h.name + "', which the method does not have (its states: " + names_of(wanted) + ")";
    }
  }
  return "";
}

}  // namespace staticllm

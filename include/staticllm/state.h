// The states of a stateful method kept across calls, like Core ML's MLState
// (MLModel.newState) and coremltools' make_state: Method::make_state() makes
// one, Method::execute(inputs, state) reads and updates it in place, so no
// call copies every state in and out. A State made by one method serves every
// method of the same Runtime whose states have the same names, dtypes and
// shapes (prefill and decode functions sharing one KV cache).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "staticllm/backend.h"
#include "staticllm/model_metadata.h"
#include "staticllm/tensor.h"

namespace staticllm {

class State {
 public:
  State(uint64_t runtime_id, std::vector<TensorSpec> specs, std::unique_ptr<StateStorage> storage);
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  const std::vector<TensorSpec>& specs() const { return specs_; }
  // A copy of the named state's current value; InputError for an unknown name.
  Tensor read(const std::string& name);
  // Sets the named state; InputError naming it when the name, dtype or shape differ.
  void write(const std::string& name, const Tensor& value);

 private:
  friend class Method;
  size_t index_of(const std::string& name) const;

  uint64_t runtime_id_;  // the Runtime whose method made it
  std::vector<TensorSpec> specs_;
  std::unique_ptr<StateStorage> storage_;
  // Calls and reads sharing a State run one at a time: both backends update
  // the buffers in place (Core ML: "predictions that use the same MLState
  // must be serialized").
  std::mutex mutex_;
};

// Empty when a State holding `held` serves a method whose states are
// `wanted`: the same names (in any order), each with the same dtype and shape.
// Otherwise what differs, e.g. "state 'kv' is fp16 [1, 8] in the State, the
// method expects fp16 [1, 16]".
std::string state_mismatch(const std::vector<TensorSpec>& wanted, const std::vector<TensorSpec>& held);

}  // namespace staticllm

// Finding attention over a key/value cache plus the call's own keys, as the
// LLM exporters write it, so the planner can run it as one kernel
// (ops/attention_split.h) that skips the cache slots the mask hides:
//
//   s0 = matmul(q, k0, transpose_y)    s1 = matmul(q, k1, transpose_y)
//   s  = reshape?(mul(concat([s0, s1], last axis), scale)) + mask
//   p  = reshape?(softmax(s, last axis))
//   out = matmul(p[..., :S0], v0) + matmul(p[..., S0:], v1)
//
// Every intermediate must be read only inside the pattern (not by another op,
// a nested block or the function's outputs); the planner then drops the
// pattern's steps for the fused one. A program that differs anywhere keeps
// its ops as they are.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mil/program.h"

namespace staticllm::mil {

struct SplitAttentionMatch {
  std::string q, k[2], v[2], mask;
  std::string scores;  // the operand of the add the mask broadcasts against
  float scale = 1.f;
  int64_t split = 0;             // where part 1's slice of p starts on the last axis (part 0's starts at 0)
  std::vector<std::string> ops;  // first output names of the ops the fused step replaces
};

class AttentionFusion {
 public:
  // What the planner knows: a parameter's constant value, null when it is
  // not a constant.
  using ConstantOf = std::function<const Tensor*(const Binding&)>;

  explicit AttentionFusion(const FunctionDecl& fn);

  // The pattern ending at `add` (the sum of the two value products), if any.
  std::optional<SplitAttentionMatch> match(const OpDecl& add, const ConstantOf& constant) const;

 private:
  const OpDecl* producer(const std::string& name, const char* type) const;
  bool used_once(const std::string& name) const;

  std::map<std::string, const OpDecl*> producer_;
  std::map<std::string, int> uses_;
};

// STATICLLM_NO_FUSION set (to anything but 0): plan every op as written, to
// compare against the fused kernels or to time them.
bool fusion_disabled();

}  // namespace staticllm::mil

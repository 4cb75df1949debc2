// The fused kernel of attention over a cache plus the call's own keys
// (attention_fusion.h finds the pattern). Per block of query rows it works
// out which key columns the mask leaves visible to any row, and computes
// scores, softmax and the value products over those columns only: a decode
// step reads the cache slots in use, a first prefill none, and causal rows
// stop at their own position. A column hidden (-inf) from every row of the
// block has probability exactly 0, so the result is the unfused one; fp16
// programs round every intermediate to fp16 where the ops would store it.
#pragma once

#include <optional>

#include "mil/op.h"

namespace staticllm::mil {

struct SplitAttentionTypes {
  ValueType q, k[2], v[2], mask;
  ValueType scores;  // the add's other operand: the mask broadcasts to it
  float scale = 1.f;
  int64_t split = 0;  // where the slice of the probabilities for k1 and v1 starts
};

// Kernel slots: q, k0, k1, v0, v1, mask. nullopt for types the kernel does
// not take (batch dimensions that broadcast, mixed dtypes...): the planner
// then keeps the program's ops.
std::optional<PlannedOp> plan_split_attention(const SplitAttentionTypes& t);

}  // namespace staticllm::mil

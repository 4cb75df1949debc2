// Placeholder: the elementwise_binary op family is filled in by its owner.
#include "mil/op.h"

namespace staticllm::mil {

void register_elementwise_binary_ops(OpRegistry& r) { (void)r; }

}  // namespace staticllm::mil

// Placeholder: the slicing op family is filled in by its owner.
#include "mil/op.h"

namespace staticllm::mil {

void register_slicing_ops(OpRegistry& r) { (void)r; }

}  // namespace staticllm::mil

// Placeholder: the shape op family is filled in by its owner.
#include "mil/op.h"

namespace staticllm::mil {

void register_shape_ops(OpRegistry& r) { (void)r; }

}  // namespace staticllm::mil

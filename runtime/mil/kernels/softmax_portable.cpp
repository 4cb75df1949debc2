// softmax_row at the portable level.
#include "mil/kernels/isa_generic.h"
#include "mil/kernels/softmax.h"
#include "mil/kernels/softmax_impl.h"

namespace staticllm::mil {

void softmax_row_portable(const float* x, float* out, int64_t n) { detail::softmax_row_impl<IsaGeneric<8>>(x, out, n); }

}  // namespace staticllm::mil

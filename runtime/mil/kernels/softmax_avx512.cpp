// softmax_row at the avx512 level.
#include "mil/kernels/isa_avx512.h"
#include "mil/kernels/softmax.h"
#include "mil/kernels/softmax_impl.h"

namespace staticllm::mil {

void softmax_row_avx512(const float* x, float* out, int64_t n) { detail::softmax_row_impl<IsaAvx512>(x, out, n); }

}  // namespace staticllm::mil

// silu_n and sigmoid_n at the avx512 level.
#include "mil/kernels/activation.h"
#include "mil/kernels/activation_impl.h"
#include "mil/kernels/isa_avx512.h"

namespace staticllm::mil {

void silu_n_avx512(const float* x, float* out, int64_t n) { detail::logistic_n<IsaAvx512, true>(x, out, n); }
void sigmoid_n_avx512(const float* x, float* out, int64_t n) { detail::logistic_n<IsaAvx512, false>(x, out, n); }

}  // namespace staticllm::mil

// silu_n and sigmoid_n at the portable level.
#include "mil/kernels/activation.h"
#include "mil/kernels/activation_impl.h"
#include "mil/kernels/isa_generic.h"

namespace staticllm::mil {

void silu_n_portable(const float* x, float* out, int64_t n) { detail::logistic_n<IsaGeneric<8>, true>(x, out, n); }
void sigmoid_n_portable(const float* x, float* out, int64_t n) { detail::logistic_n<IsaGeneric<8>, false>(x, out, n); }

}  // namespace staticllm::mil

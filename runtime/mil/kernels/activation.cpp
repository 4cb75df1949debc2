// Run-time choice of the activation kernels.
#include "mil/kernels/activation.h"

#include "mil/cpu_features.h"

namespace staticllm::mil {

void silu_n(const float* x, float* out, int64_t n) {
#if defined(STATICLLM_X86_SIMD)
  switch (simd_level()) {
    case SimdLevel::kAvx512: return silu_n_avx512(x, out, n);
    case SimdLevel::kAvx2: return silu_n_avx2(x, out, n);
    default: break;
  }
#endif
  silu_n_portable(x, out, n);
}

void sigmoid_n(const float* x, float* out, int64_t n) {
#if defined(STATICLLM_X86_SIMD)
  switch (simd_level()) {
    case SimdLevel::kAvx512: return sigmoid_n_avx512(x, out, n);
    case SimdLevel::kAvx2: return sigmoid_n_avx2(x, out, n);
    default: break;
  }
#endif
  sigmoid_n_portable(x, out, n);
}

}  // namespace staticllm::mil

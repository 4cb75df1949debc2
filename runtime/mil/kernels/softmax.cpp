// Run-time choice of the softmax row kernel.
#include "mil/kernels/softmax.h"

#include "mil/cpu_features.h"

namespace staticllm::mil {

void softmax_row(const float* x, float* out, int64_t n) {
#if defined(STATICLLM_X86_SIMD)
  switch (simd_level()) {
    case SimdLevel::kAvx512: return softmax_row_avx512(x, out, n);
    case SimdLevel::kAvx2: return softmax_row_avx2(x, out, n);
    default: break;
  }
#endif
  softmax_row_portable(x, out, n);
}

}  // namespace staticllm::mil

// Baseline kernels for CPUs without AVX2 (and non-x86 builds).
#include "mil/half.h"
#include "mil/kernels/gemm.h"
#include "mil/kernels/gemm_nn_impl.h"

namespace staticllm::mil {

void gemm_nt_portable(const float* x, int64_t M, int64_t K, const void* w, WeightType wt, float* y, int64_t ldy,
                      int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t m = 0; m < M; ++m) {
      const float* xm = x + m * K;
      float acc = 0.f;
      if (wt == WeightType::kF32) {
        const float* wn = static_cast<const float*>(w) + n * K;
        for (int64_t k = 0; k < K; ++k) acc += xm[k] * wn[k];
      } else {
        const half_bits* wn = static_cast<const half_bits*>(w) + n * K;
        for (int64_t k = 0; k < K; ++k) acc += xm[k] * half_to_float(wn[k]);
      }
      y[m * ldy + n] = acc;
    }
  }
}

void gemm_nn_portable(const float* x, int64_t K, const void* b, WeightType bt, int64_t N, float* y, int64_t m0,
                      int64_t m1) {
  detail::gemm_nn_body(x, K, b, bt, N, y, m0, m1);
}

}  // namespace staticllm::mil

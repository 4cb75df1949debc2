// Run-time choice of the gemm kernels.
#include "mil/kernels/gemm.h"

#include <algorithm>

#include "mil/cpu_features.h"
#include "mil/thread_pool.h"

namespace staticllm::mil {

void gemm_nt(const float* x, int64_t M, int64_t K, const void* w, WeightType wt, float* y, int64_t ldy, int64_t n0,
             int64_t n1) {
#if defined(STATICLLM_X86_SIMD)
  switch (simd_level()) {
    case SimdLevel::kAvx512: return gemm_nt_avx512(x, M, K, w, wt, y, ldy, n0, n1);
    case SimdLevel::kAvx2: return gemm_nt_avx2(x, M, K, w, wt, y, ldy, n0, n1);
    default: break;
  }
#endif
  gemm_nt_portable(x, M, K, w, wt, y, ldy, n0, n1);
}

void parallel_output_rows(ThreadPool* pool, int64_t n, int64_t flops, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool == nullptr || flops < kParallelFlops || n < 8) return fn(0, n);
  const int64_t blocks = (n + 31) / 32;
  pool->parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) { fn(b0 * 32, std::min(n, b1 * 32)); });
}

void gemm_nn(const float* x, int64_t K, const void* b, WeightType bt, int64_t N, float* y, int64_t m0, int64_t m1) {
#if defined(STATICLLM_X86_SIMD)
  switch (simd_level()) {
    case SimdLevel::kAvx512: return gemm_nn_avx512(x, K, b, bt, N, y, m0, m1);
    case SimdLevel::kAvx2: return gemm_nn_avx2(x, K, b, bt, N, y, m0, m1);
    default: break;
  }
#endif
  gemm_nn_portable(x, K, b, bt, N, y, m0, m1);
}

}  // namespace staticllm::mil

// Plain C++ body of gemm_nn, compiled once per ISA file so the compiler
// vectorises the axpy loop with the instructions that file may use.
#pragma once

#include <cstdint>

namespace staticllm::mil::detail {

inline void gemm_nn_body(const float* __restrict x, int64_t K, const float* __restrict b, int64_t N,
                         float* __restrict y, int64_t m0, int64_t m1) {
  for (int64_t m = m0; m < m1; ++m) {
    float* __restrict row = y + m * N;
    for (int64_t n = 0; n < N; ++n) row[n] = 0.f;
    const float* xm = x + m * K;
    for (int64_t k = 0; k < K; ++k) {
      const float a = xm[k];
      const float* __restrict bk = b + k * N;
      for (int64_t n = 0; n < N; ++n) row[n] += a * bk[n];
    }
  }
}

}  // namespace staticllm::mil::detail

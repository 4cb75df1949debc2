// Plain C++ body of gemm_nn, compiled once per ISA file so the compiler
// vectorises the axpy loop with the instructions that file may use.
#pragma once

#include <algorithm>
#include <cstdint>

#include "mil/half.h"
#include "mil/kernels/gemm.h"

namespace staticllm::mil::detail {

// Columns of b per pass: an fp16 row slice widens into a stack buffer that
// stays in L1, and the M output slices it feeds stay in L1/L2 with it.
constexpr int64_t kNnCols = 256;

inline void gemm_nn_body(const float* __restrict x, int64_t K, const void* b, WeightType bt, int64_t N,
                         float* __restrict y, int64_t m0, int64_t m1) {
  for (int64_t m = m0; m < m1; ++m) std::fill(y + m * N, y + (m + 1) * N, 0.f);
  alignas(64) float wide[kNnCols];
  for (int64_t n0 = 0; n0 < N; n0 += kNnCols) {
    const int64_t nc = std::min(kNnCols, N - n0);
    for (int64_t k = 0; k < K; ++k) {
      const float* __restrict bk;
      if (bt == WeightType::kF32) {
        bk = static_cast<const float*>(b) + k * N + n0;
      } else {
        half_to_float_n(static_cast<const half_bits*>(b) + k * N + n0, wide, nc);
        bk = wide;
      }
      for (int64_t m = m0; m < m1; ++m) {
        const float a = x[m * K + k];
        float* __restrict row = y + m * N + n0;
        for (int64_t n = 0; n < nc; ++n) row[n] += a * bk[n];
      }
    }
  }
}

}  // namespace staticllm::mil::detail

// The row kernel of softmax, chosen at run time for the CPU: the exp is a
// polynomial in registers (kernels/exp_poly.h), the same at every SIMD level.
#pragma once

#include <cstdint>

namespace staticllm::mil {

// out[i] = exp(x[i] - max(x)) / sum_j exp(x[j] - max(x)) for i < n (out may be x).
void softmax_row(const float* x, float* out, int64_t n);

// Per-ISA entry points (softmax_portable.cpp, softmax_avx2.cpp, softmax_avx512.cpp).
void softmax_row_portable(const float* x, float* out, int64_t n);
void softmax_row_avx2(const float* x, float* out, int64_t n);
void softmax_row_avx512(const float* x, float* out, int64_t n);

}  // namespace staticllm::mil

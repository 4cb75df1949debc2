// Vector kernels of the sigmoid-family activations, chosen at run time for
// the CPU: the exp is the polynomial of kernels/exp_poly.h, the same at every
// SIMD level (a scalar std::exp per element made silu a sixth of a prefill).
#pragma once

#include <cstdint>

namespace staticllm::mil {

// out[i] = x[i] / (1 + e^-x[i]) for i < n (out may be x).
void silu_n(const float* x, float* out, int64_t n);
// out[i] = 1 / (1 + e^-x[i]) for i < n (out may be x).
void sigmoid_n(const float* x, float* out, int64_t n);

// Per-ISA entry points (activation_portable.cpp, activation_avx2.cpp, activation_avx512.cpp).
void silu_n_portable(const float* x, float* out, int64_t n);
void silu_n_avx2(const float* x, float* out, int64_t n);
void silu_n_avx512(const float* x, float* out, int64_t n);
void sigmoid_n_portable(const float* x, float* out, int64_t n);
void sigmoid_n_avx2(const float* x, float* out, int64_t n);
void sigmoid_n_avx512(const float* x, float* out, int64_t n);

}  // namespace staticllm::mil

// Matrix kernels behind linear and matmul, chosen at run time for the CPU.
// Activations are fp32 (ops convert fp16 activations once per call); weights
// are read in their stored dtype, fp16 converted in registers.
#pragma once

#include <cstdint>
#include <functional>

namespace staticllm::mil {

class ThreadPool;

enum class WeightType { kF32, kF16 };

// y[m * ldy + n] = sum_k x[m * K + k] * w[n * K + k]   for m < M, n in [n0, n1).
// (x times w transposed: the layout of linear's weight and of matmul with
// transpose_y.)
void gemm_nt(const float* x, int64_t M, int64_t K, const void* w, WeightType wt, float* y, int64_t ldy, int64_t n0,
             int64_t n1);

// y[m * N + n] = sum_k x[m * K + k] * b[k * N + n]   for m in [m0, m1), b in
// its stored dtype (fp16 rows widened a slice at a time, never all of b).
void gemm_nn(const float* x, int64_t K, const void* b, WeightType bt, int64_t N, float* y, int64_t m0, int64_t m1);

// Weight columns that make whole column panels of the dense panel kernels at
// every SIMD level (16 for AVX2, 48 for AVX-512; the ISA files assert it): the
// compressed kernels expand a [K, N] weight this many columns at a time, and an
// [N, K] one this many rows at a time, for those kernels.
constexpr int64_t kWholePanelCols = 48;

// Products of less work than this (in FLOP / 2) stay on the calling thread.
constexpr int64_t kParallelFlops = 1 << 16;

// Splits output features [0, n) over the pool for a product of `flops` work
// (small ones stay on the calling thread) in chunks that are multiples of 32,
// which keep the small-M kernels' 16-row tiles whole (a chunk ending inside one
// of AVX-512's 48-column panels runs that panel narrower): fn(n0, n1) per chunk.
void parallel_output_rows(ThreadPool* pool, int64_t n, int64_t flops, const std::function<void(int64_t, int64_t)>& fn);

// Per-ISA entry points (gemm_portable.cpp, gemm_avx2.cpp, gemm_avx512.cpp).
void gemm_nt_portable(const float* x, int64_t M, int64_t K, const void* w, WeightType wt, float* y, int64_t ldy,
                      int64_t n0, int64_t n1);
void gemm_nt_avx2(const float* x, int64_t M, int64_t K, const void* w, WeightType wt, float* y, int64_t ldy, int64_t n0,
                  int64_t n1);
void gemm_nt_avx512(const float* x, int64_t M, int64_t K, const void* w, WeightType wt, float* y, int64_t ldy,
                    int64_t n0, int64_t n1);
void gemm_nn_portable(const float* x, int64_t K, const void* b, WeightType bt, int64_t N, float* y, int64_t m0,
                      int64_t m1);
void gemm_nn_avx2(const float* x, int64_t K, const void* b, WeightType bt, int64_t N, float* y, int64_t m0, int64_t m1);
void gemm_nn_avx512(const float* x, int64_t K, const void* b, WeightType bt, int64_t N, float* y, int64_t m0,
                    int64_t m1);

}  // namespace staticllm::mil

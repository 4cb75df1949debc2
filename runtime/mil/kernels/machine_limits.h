// What the machine can do, measured: the limits the benchmarks compare the
// kernels with (decode GEMV against read bandwidth, prefill GEMM against the
// fp32 FMA peak). Both run on every thread of the pool.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mil/thread_pool.h"

namespace staticllm::mil {

// Bytes per second reading a buffer of `bytes` once per pass (best of `passes`),
// each thread summing its share.
double measure_read_bandwidth(ThreadPool& pool, size_t bytes, int passes);

// fp32 FLOP per second of independent fused multiply-adds held in registers
// (2 FLOP each), at the SIMD level the kernels run at (best of `passes`).
double measure_fma_peak(ThreadPool& pool, int passes);

// One kernel call's timing: the weight bytes it read and the FLOP it did.
struct KernelTiming {
  double seconds = 0;  // median of the timed calls
  double weight_bytes = 0;
  double flops = 0;
};

// Times linear's product y[M, N] = x[M, K] W^T for a random weight stored as
// `precision`: "fp32", "fp16", "int8" (per-channel scale), "int4" (signed, blocks
// of 32 with a scale) or "lut4" (a 16-entry table per 16 rows), split
// over the pool as linear splits it. Throws std::invalid_argument otherwise.
KernelTiming time_linear_kernel(ThreadPool& pool, const char* precision, int64_t M, int64_t N, int64_t K, int calls);

}  // namespace staticllm::mil

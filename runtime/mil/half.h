// IEEE fp16 <-> fp32 conversion, portable scalar versions. SIMD kernels in
// runtime/mil/kernels/ use F16C/AVX-512 instructions instead.
#pragma once

#include <cstdint>
#include <cstring>

namespace staticllm::mil {

using half_bits = uint16_t;

float half_to_float(half_bits h);
half_bits float_to_half(float f);  // round to nearest even, inf/nan kept

// Bulk conversions; dispatch to F16C when the CPU has it.
void half_to_float_n(const half_bits* src, float* dst, int64_t n);
void float_to_half_n(const float* src, half_bits* dst, int64_t n);

}  // namespace staticllm::mil

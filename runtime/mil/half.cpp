// Scalar fp16 conversions and the run-time dispatch of the bulk ones.
#include "mil/half.h"

#include "mil/cpu_features.h"

namespace staticllm::mil {

float half_to_float(half_bits h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal half: normalise the mantissa into a normal float.
    int shift = 0;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      ++shift;
    }
    mant &= 0x3ffu;
    bits = sign | (static_cast<uint32_t>(113 - shift) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

half_bits float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or nan (keep nan quiet and non-zero)
    return static_cast<half_bits>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
  }
  if (abs >= 0x477ff000u) return static_cast<half_bits>(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero): shift the full mantissa and round to nearest even.
    if (abs < 0x33000000u) return static_cast<half_bits>(sign);
    uint32_t e = abs >> 23;
    uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;  // 14 - (e - 127) + 13 - 1
    uint32_t half_m = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half_m & 1u))) ++half_m;
    return static_cast<half_bits>(sign | half_m);
  }
  // Normal: rebias the exponent, round the 13 dropped bits to nearest even.
  uint32_t h = ((abs >> 13) - (112u << 10));
  uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<half_bits>(sign | h);
}

namespace {

void half_to_float_portable(const half_bits* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(src[i]);
}

void float_to_half_portable(const float* src, half_bits* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_half(src[i]);
}

}  // namespace

#if defined(STATICLLM_X86_SIMD)
// kernels/half_avx2.cpp
void half_to_float_f16c(const half_bits* src, float* dst, int64_t n);
void float_to_half_f16c(const float* src, half_bits* dst, int64_t n);
#endif

void half_to_float_n(const half_bits* src, float* dst, int64_t n) {
#if defined(STATICLLM_X86_SIMD)
  if (simd_level() >= SimdLevel::kAvx2) return half_to_float_f16c(src, dst, n);
#endif
  half_to_float_portable(src, dst, n);
}

void float_to_half_n(const float* src, half_bits* dst, int64_t n) {
#if defined(STATICLLM_X86_SIMD)
  if (simd_level() >= SimdLevel::kAvx2) return float_to_half_f16c(src, dst, n);
#endif
  float_to_half_portable(src, dst, n);
}

}  // namespace staticllm::mil

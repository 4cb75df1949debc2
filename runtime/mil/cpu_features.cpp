#include "mil/cpu_features.h"

#include <cstdlib>
#include <cstring>

#if defined(STATICLLM_X86_SIMD) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define STATICLLM_HAVE_CPUID 1
#endif

namespace staticllm::mil {

namespace {

// CPUID bits (Intel SDM vol. 2A, CPUID; AMD APM vol. 3, appendix E).
constexpr uint32_t kLeaf1Fma = 1u << 12;
constexpr uint32_t kLeaf1Osxsave = 1u << 27;
constexpr uint32_t kLeaf1Avx = 1u << 28;
constexpr uint32_t kLeaf1F16c = 1u << 29;
constexpr uint32_t kLeaf7Avx2 = 1u << 5;
constexpr uint32_t kLeaf7Avx512f = 1u << 16;
constexpr uint32_t kLeaf7Avx512dq = 1u << 17;
constexpr uint32_t kLeaf7Avx512bw = 1u << 30;
constexpr uint32_t kLeaf7Avx512vl = 1u << 31;
// XCR0 state components the OS must enable: SSE and AVX (YMM) registers for
// AVX2; opmask, upper ZMM0-15 and ZMM16-31 on top for AVX-512.
constexpr uint64_t kXcr0Avx = 0x6;
constexpr uint64_t kXcr0Avx512 = 0xe0;

bool all(uint64_t value, uint64_t mask) { return (value & mask) == mask; }

SimdLevel with_override(SimdLevel detected) {
  const char* env = std::getenv("STATICLLM_SIMD");
  if (env == nullptr) return detected;
  SimdLevel wanted = detected;
  if (std::strcmp(env, "portable") == 0) wanted = SimdLevel::kPortable;
  if (std::strcmp(env, "avx2") == 0) wanted = SimdLevel::kAvx2;
  if (std::strcmp(env, "avx512") == 0) wanted = SimdLevel::kAvx512;
  return static_cast<int>(wanted) < static_cast<int>(detected) ? wanted : detected;
}

}  // namespace

// Reads the registers directly: clang 14's __builtin_cpu_supports knows no
// "f16c", and XGETBV as inline assembly needs no -mxsave.
CpuidBits read_cpuid() {
  CpuidBits bits;
#ifdef STATICLLM_HAVE_CPUID
  unsigned a, b, c, d;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return bits;
  bits.leaf1_ecx = c;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) != 0) bits.leaf7_ebx = b;
  if (all(bits.leaf1_ecx, kLeaf1Osxsave)) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    bits.xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
  }
#endif
  return bits;
}

SimdLevel simd_level_from_cpuid(const CpuidBits& bits) {
  bool avx2 = all(bits.leaf1_ecx, kLeaf1Osxsave | kLeaf1Avx | kLeaf1Fma | kLeaf1F16c) &&
              all(bits.leaf7_ebx, kLeaf7Avx2) && all(bits.xcr0, kXcr0Avx);
  bool avx512 = avx2 && all(bits.leaf7_ebx, kLeaf7Avx512f | kLeaf7Avx512dq | kLeaf7Avx512bw | kLeaf7Avx512vl) &&
                all(bits.xcr0, kXcr0Avx512);
  if (avx512) return SimdLevel::kAvx512;
  if (avx2) return SimdLevel::kAvx2;
  return SimdLevel::kPortable;
}

SimdLevel simd_level() {
  static const SimdLevel level = with_override(simd_level_from_cpuid(read_cpuid()));
  return level;
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kAvx512: return "avx512";
    case SimdLevel::kAvx2: return "avx2";
    default: return "portable";
  }
}

}  // namespace staticllm::mil

// Which SIMD kernels this CPU can run, decided once at run time.
#pragma once

#include <cstdint>

namespace staticllm::mil {

enum class SimdLevel : int {
  kPortable = 0,
  kAvx2 = 1,    // AVX2 + FMA + F16C
  kAvx512 = 2,  // AVX-512 F/BW/VL/DQ on top of kAvx2
};

// Detected from CPUID; STATICLLM_SIMD=portable|avx2|avx512 lowers it (tests,
// or to rule out a kernel), never raises it above what the CPU has.
SimdLevel simd_level();
const char* simd_level_name(SimdLevel level);

// The registers detection reads: CPUID leaf 1 ECX, leaf 7 (sub-leaf 0) EBX,
// and XCR0 (read with XGETBV, 0 when the OS has not enabled XSAVE).
struct CpuidBits {
  uint32_t leaf1_ecx = 0;
  uint32_t leaf7_ebx = 0;
  uint64_t xcr0 = 0;
};
// This CPU's registers (all zero off x86).
CpuidBits read_cpuid();
// The level those registers allow: the instructions must exist (CPUID) and
// the OS must save their registers on a context switch (XCR0).
SimdLevel simd_level_from_cpuid(const CpuidBits& bits);

}  // namespace staticllm::mil

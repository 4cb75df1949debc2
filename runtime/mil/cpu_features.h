// Which SIMD kernels this CPU can run, decided once at run time.
#pragma once

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

}  // namespace staticllm::mil

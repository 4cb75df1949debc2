#include "mil/cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace staticllm::mil {

namespace {

SimdLevel detect() {
#if defined(STATICLLM_X86_SIMD) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (avx512) return SimdLevel::kAvx512;
  if (avx2) return SimdLevel::kAvx2;
#endif
  return SimdLevel::kPortable;
}

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

SimdLevel simd_level() {
  static const SimdLevel level = with_override(detect());
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

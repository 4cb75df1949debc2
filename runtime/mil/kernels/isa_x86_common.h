// Pieces the AVX2 and AVX-512 vector interfaces share: loading the bytes of
// a run of packed codes without reading past them, and the byte shuffle and
// shift that spread codes of BITS < 8 bits into 32-bit lanes (the same
// tables serve 8 and 16 lanes, since both shuffle within 128-bit lanes of a
// broadcast source).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace staticllm::mil::x86 {

// NB (<= 16) bytes from p into the low bytes of a register, the rest zero.
// Reads exactly NB bytes: the last codes of a weight may end the file mapping.
template <int NB>
inline __m128i load_code_bytes(const uint8_t* p) {
  static_assert(NB >= 1 && NB <= 16, "at most one 128-bit register of codes");
  if constexpr (NB == 16) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  } else if constexpr (NB == 8) {
    return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  } else if constexpr (NB < 8) {
    uint64_t v = 0;
    std::memcpy(&v, p, NB);
    return _mm_cvtsi64_si128(static_cast<long long>(v));
  } else {
    uint64_t lo = 0, hi = 0;
    std::memcpy(&lo, p, 8);
    std::memcpy(&hi, p + 8, NB - 8);
    return _mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo));
  }
}

// For LANES codes of BITS bits: lane i takes the two bytes holding its code
// (shuffle control, relative to its 128-bit lane, which holds a copy of all
// the code bytes) and shifts them right by the code's bit offset.
template <int BITS, int LANES>
struct UnpackTables {
  alignas(64) int8_t shuffle[LANES * 4];
  alignas(64) int32_t shift[LANES];
  constexpr UnpackTables() : shuffle(), shift() {
    for (int i = 0; i < LANES; ++i) {
      const int bit = i * BITS;
      shuffle[i * 4 + 0] = static_cast<int8_t>(bit / 8);
      shuffle[i * 4 + 1] = static_cast<int8_t>(bit / 8 + 1);
      shuffle[i * 4 + 2] = -128;  // zero
      shuffle[i * 4 + 3] = -128;
      shift[i] = bit % 8;
    }
  }
};
template <int BITS, int LANES>
inline constexpr UnpackTables<BITS, LANES> kUnpack{};

}  // namespace staticllm::mil::x86

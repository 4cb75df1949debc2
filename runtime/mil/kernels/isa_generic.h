// The vector operations the compressed kernels are written against, in plain
// C++ over N lanes. The portable kernels use N = 8 (compilers vectorise the
// lane loops for SSE2/NEON); the tests also run N = 16, the AVX-512 width,
// so the kernels' lane, tail and alignment logic at that width is exercised
// on machines without AVX-512. isa_avx2.h and isa_avx512.h implement the
// same interface with intrinsics.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#include "mil/half.h"
#include "mil/kernels/exp_poly.h"

namespace staticllm::mil {

template <int N>
struct IsaGeneric {
  static constexpr int W = N;
  struct F {
    float v[N];
  };
  struct I {
    int32_t v[N];
  };

  static F zero() { return set1(0.f); }
  static F set1(float a) {
    F r;
    for (int i = 0; i < N; ++i) r.v[i] = a;
    return r;
  }
  static F load(const float* p) {
    F r;
    std::memcpy(r.v, p, sizeof(r.v));
    return r;
  }
  // The first n (< N) lanes from p, the others 0; reads only n floats.
  static F load_part(const float* p, int n) {
    F r = zero();
    for (int i = 0; i < n; ++i) r.v[i] = p[i];
    return r;
  }
  static void store(float* p, F a) { std::memcpy(p, a.v, sizeof(a.v)); }
  static void store_part(float* p, F a, int n) {
    for (int i = 0; i < n; ++i) p[i] = a.v[i];
  }
  static F fma(F a, F b, F c) {  // a * b + c
    for (int i = 0; i < N; ++i) c.v[i] += a.v[i] * b.v[i];
    return c;
  }
  static F add(F a, F b) {
    for (int i = 0; i < N; ++i) a.v[i] += b.v[i];
    return a;
  }
  static float hsum(F a) {
    float s = 0.f;
    for (int i = 0; i < N; ++i) s += a.v[i];
    return s;
  }
  static F cvt(I a) {
    F r;
    for (int i = 0; i < N; ++i) r.v[i] = static_cast<float>(a.v[i]);
    return r;
  }
  static F sub(F a, F b) {
    for (int i = 0; i < N; ++i) a.v[i] -= b.v[i];
    return a;
  }
  static F max(F a, F b) {
    for (int i = 0; i < N; ++i) a.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i];
    return a;
  }
  static F mul(F a, F b) {
    for (int i = 0; i < N; ++i) a.v[i] *= b.v[i];
    return a;
  }
  static F div(F a, F b) {
    for (int i = 0; i < N; ++i) a.v[i] /= b.v[i];
    return a;
  }
  static F exp(F x) {
    using namespace exp_poly;
    for (int i = 0; i < N; ++i) {
      float v = x.v[i];
      if (v != v) continue;  // NaN stays NaN
      if (v < kMin) {
        x.v[i] = 0.f;
        continue;
      }
      v = v > kMax ? kMax : v;
      const float n = std::nearbyint(v * kLog2e);
      const float r = (v - n * kLn2Hi) - n * kLn2Lo;
      float p = kC[0];
      for (int c = 1; c < 6; ++c) p = p * r + kC[c];
      const float y = (p * r) * r + r + 1.f;
      x.v[i] = std::ldexp(y, static_cast<int>(n));
    }
    return x;
  }
  static F load_half(const uint16_t* p) { return load_half_part(p, N); }
  static F load_half_part(const uint16_t* p, int n) {  // n (<= N) halves, the other lanes 0
    F r = zero();
    for (int i = 0; i < n; ++i) r.v[i] = half_to_float(p[i]);
    return r;
  }
  static void transpose(F (&r)[N]) {  // r[i].v[j] <- r[j].v[i]
    for (int i = 0; i < N; ++i)
      for (int j = i + 1; j < N; ++j) std::swap(r[i].v[j], r[j].v[i]);
  }

  // N codes of BITS bits from the N * BITS / 8 bytes at p (least significant
  // bits first), sign-extended when SIGNED.
  template <int BITS, bool SIGNED>
  static I codes(const uint8_t* p) {
    I r;
    for (int i = 0; i < N; ++i) {
      const int bit = i * BITS;
      uint32_t word = p[bit / 8];
      if (bit % 8 + BITS > 8) word |= static_cast<uint32_t>(p[bit / 8 + 1]) << 8;
      uint32_t v = (word >> (bit % 8)) & ((1u << BITS) - 1u);
      if (SIGNED && (v >> (BITS - 1)) != 0) v |= ~((1u << BITS) - 1u);
      r.v[i] = static_cast<int32_t>(v);
    }
    return r;
  }

  // The 2N codes of 4 bits in the N bytes at p: the low nibbles (even codes)
  // in lo, the high ones (odd codes) in hi; FLIP flips each code's top bit
  // (a signed code c becomes c + 8).
  template <bool FLIP>
  static void nibbles(const uint8_t* p, I* lo, I* hi) {
    for (int i = 0; i < N; ++i) {
      const int b = p[i] ^ (FLIP ? 0x88 : 0);
      lo->v[i] = b & 15;
      hi->v[i] = b >> 4;
    }
  }
  // The 2N codes of 4 bits in the N bytes at p as floats, split as nibbles()
  // does: code + kNibbleBias (a signed code read with its top bit flipped).
  template <bool SIGNED>
  static constexpr int kNibbleBias = SIGNED ? 8 : 0;
  template <bool SIGNED>
  static void nibble_values(const uint8_t* p, F* lo, F* hi) {
    I a, b;
    nibbles<SIGNED>(p, &a, &b);
    *lo = cvt(a);
    *hi = cvt(b);
  }
  static float half(uint16_t h) { return half_to_float(h); }

  // A lookup table of 1 << BITS floats; `table` stays valid while it is used.
  template <int BITS>
  struct Lut {
    const float* table;
  };
  template <int BITS>
  static Lut<BITS> make_lut(const float* table) {
    return {table};
  }
  template <int BITS>
  static F lookup(const Lut<BITS>& lut, I idx) {
    F r;
    for (int i = 0; i < N; ++i) r.v[i] = lut.table[idx.v[i]];
    return r;
  }
  // A 16-entry table's values for the 2N codes of 4 bits at p, split as nibbles() does.
  static void nibble_lookup(const uint8_t* p, const Lut<4>& lut, F* lo, F* hi) {
    I a, b;
    nibbles<false>(p, &a, &b);
    *lo = lookup<4>(lut, a);
    *hi = lookup<4>(lut, b);
  }
};

}  // namespace staticllm::mil

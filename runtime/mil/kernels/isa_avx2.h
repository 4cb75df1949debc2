// The compressed kernels' vector interface (see isa_generic.h) on AVX2 + FMA:
// 8 fp32 lanes. Include only from files compiled with -mavx2 -mfma -mf16c.
#pragma once

#include "mil/kernels/exp_poly.h"
#include "mil/kernels/isa_x86_common.h"

namespace staticllm::mil {

struct IsaAvx2 {
  static constexpr int W = 8;
  using F = __m256;
  using I = __m256i;

  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float a) { return _mm256_set1_ps(a); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static __m256i part_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static F load_part(const float* p, int n) { return _mm256_maskload_ps(p, part_mask(n)); }
  static void store(float* p, F a) { _mm256_storeu_ps(p, a); }
  static void store_part(float* p, F a, int n) { _mm256_maskstore_ps(p, part_mask(n), a); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static float hsum(F v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
  static F cvt(I a) { return _mm256_cvtepi32_ps(a); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  // e^x, see exp_poly in isa_generic.h for the method and its constants.
  static F exp(F x) {
    using namespace exp_poly;
    const F under = _mm256_cmp_ps(x, _mm256_set1_ps(kMin), _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_set1_ps(kMax), _mm256_max_ps(_mm256_set1_ps(kMin), x));  // NaN stays NaN
    const F n =
        _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const F r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x));
    F p = _mm256_set1_ps(kC[0]);
    for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC[i]));
    const F y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(y, _mm256_castsi256_ps(bits)));
  }
  static F load_half(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static F load_half_part(const uint16_t* p, int n) {  // reads only n halves
    alignas(16) uint16_t buf[8] = {};
    std::memcpy(buf, p, static_cast<size_t>(n) * sizeof(uint16_t));
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(buf)));
  }
  // r[i][j] <- r[j][i]: 32-bit, then 64-bit interleaves within 128-bit lanes
  // (u[4g + j] lane L holds column 4L + j of rows 4g .. 4g + 3), then one
  // 128-bit lane exchange.
  static void transpose(F (&r)[W]) {
    F t[W], u[W];
    for (int i = 0; i < W; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < W; g += 4) {
      auto pd = [](F a) { return _mm256_castps_pd(a); };
      u[g + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(pd(t[g]), pd(t[g + 2])));
      u[g + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(pd(t[g]), pd(t[g + 2])));
      u[g + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(pd(t[g + 1]), pd(t[g + 3])));
      u[g + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(pd(t[g + 1]), pd(t[g + 3])));
    }
    for (int j = 0; j < 4; ++j) {
      r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
      r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
  }

  template <int BITS, bool SIGNED>
  static I codes(const uint8_t* p) {
    if constexpr (BITS == 8) {
      __m128i b = x86::load_code_bytes<8>(p);
      return SIGNED ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
    } else {
      const auto& t = x86::kUnpack<BITS, 8>;
      __m256i v = _mm256_broadcastsi128_si256(x86::load_code_bytes<BITS>(p));
      v = _mm256_shuffle_epi8(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(t.shuffle)));
      v = _mm256_srlv_epi32(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(t.shift)));
      if constexpr (SIGNED) return _mm256_srai_epi32(_mm256_slli_epi32(v, 32 - BITS), 32 - BITS);
      return _mm256_and_si256(v, _mm256_set1_epi32((1 << BITS) - 1));
    }
  }

  // 16 codes of 4 bits from 8 bytes: even codes in lo, odd ones in hi (see isa_generic.h).
  template <bool FLIP>
  static void nibbles(const uint8_t* p, I* lo, I* hi) {
    __m128i b = x86::load_code_bytes<8>(p);
    if constexpr (FLIP) b = _mm_xor_si128(b, _mm_set1_epi8(static_cast<char>(0x88)));
    __m256i v = _mm256_cvtepu8_epi32(b);
    *lo = _mm256_and_si256(v, _mm256_set1_epi32(15));
    *hi = _mm256_srli_epi32(v, 4);
  }
  // See isa_generic.h. A conversion: a 16-entry lookup takes two permutes and a blend at 8 lanes.
  template <bool SIGNED>
  static constexpr int kNibbleBias = SIGNED ? 8 : 0;
  template <bool SIGNED>
  static void nibble_values(const uint8_t* p, F* lo, F* hi) {
    I a, b;
    nibbles<SIGNED>(p, &a, &b);
    *lo = cvt(a);
    *hi = cvt(b);
  }
  static float half(uint16_t h) { return _cvtsh_ss(h); }

  // Up to 16 entries live in registers (permutes); larger tables are gathered.
  template <int BITS>
  struct Lut {
    __m256 t0, t1;
    const float* table;
  };
  template <int BITS>
  static Lut<BITS> make_lut(const float* table) {  // table padded with zeros to >= 16 entries
    return {_mm256_loadu_ps(table), _mm256_loadu_ps(table + 8), table};
  }
  template <int BITS>
  static F lookup(const Lut<BITS>& lut, I idx) {
    if constexpr (BITS <= 3) {
      return _mm256_permutevar8x32_ps(lut.t0, idx);
    } else if constexpr (BITS == 4) {
      __m256 lo = _mm256_permutevar8x32_ps(lut.t0, idx), hi = _mm256_permutevar8x32_ps(lut.t1, idx);
      return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));  // bit 3 -> sign
    } else {
      return _mm256_i32gather_ps(lut.table, idx, 4);
    }
  }
  static void nibble_lookup(const uint8_t* p, const Lut<4>& lut, F* lo, F* hi) {
    I a, b;
    nibbles<false>(p, &a, &b);
    *lo = lookup<4>(lut, a);
    *hi = lookup<4>(lut, b);
  }
};

}  // namespace staticllm::mil

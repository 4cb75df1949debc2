// The compressed kernels' vector interface (see isa_generic.h) on AVX-512
// F/BW/VL/DQ: 16 fp32 lanes, masked loads and stores for partial vectors.
// The kernel logic at this width also runs in the tests as IsaGeneric<16>.
// Include only from files compiled with the AVX-512 flags.
#pragma once

#include "mil/kernels/exp_poly.h"
#include "mil/kernels/isa_x86_common.h"

namespace staticllm::mil {

struct IsaAvx512 {
  static constexpr int W = 16;
  using F = __m512;
  using I = __m512i;

  static F zero() { return _mm512_setzero_ps(); }
  static F set1(float a) { return _mm512_set1_ps(a); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static __mmask16 part_mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static F load_part(const float* p, int n) { return _mm512_maskz_loadu_ps(part_mask(n), p); }
  static void store(float* p, F a) { _mm512_storeu_ps(p, a); }
  static void store_part(float* p, F a, int n) { _mm512_mask_storeu_ps(p, part_mask(n), a); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static float hsum(F v) { return _mm512_reduce_add_ps(v); }
  static F cvt(I a) { return _mm512_cvtepi32_ps(a); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  // e^x, see exp_poly in isa_generic.h for the method and its constants.
  static F exp(F x) {
    using namespace exp_poly;
    const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kMin), _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_set1_ps(kMax), _mm512_max_ps(_mm512_set1_ps(kMin), x));  // NaN stays NaN
    const F n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT);
    const F r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x));
    F p = _mm512_set1_ps(kC[0]);
    for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC[i]));
    const F y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.f));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mul_ps(static_cast<__mmask16>(~under), y, _mm512_castsi512_ps(bits));
  }
  static F load_half(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static F load_half_part(const uint16_t* p, int n) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(part_mask(n), p));
  }
  // r[i][j] <- r[j][i]: 32-bit, then 64-bit interleaves within 128-bit lanes
  // (u[4g + j] lane L holds column 4L + j of rows 4g .. 4g + 3), then two
  // rounds of 128-bit lane shuffles gather each column's four pieces.
  static void transpose(F (&r)[W]) {
    F t[W], u[W];
    for (int i = 0; i < W; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < W; g += 4) {
      auto pd = [](F a) { return _mm512_castps_pd(a); };
      u[g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[g]), pd(t[g + 2])));
      u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[g]), pd(t[g + 2])));
      u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[g + 1]), pd(t[g + 3])));
      u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[g + 1]), pd(t[g + 3])));
    }
    for (int j = 0; j < 4; ++j) {
      F s0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), s1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
      F s2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88), s3 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
      r[j] = _mm512_shuffle_f32x4(s0, s2, 0x88);
      r[8 + j] = _mm512_shuffle_f32x4(s0, s2, 0xDD);
      r[4 + j] = _mm512_shuffle_f32x4(s1, s3, 0x88);
      r[12 + j] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
    }
  }

  template <int BITS, bool SIGNED>
  static I codes(const uint8_t* p) {
    if constexpr (BITS == 8) {
      __m128i b = x86::load_code_bytes<16>(p);
      return SIGNED ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b);
    } else {
      const auto& t = x86::kUnpack<BITS, 16>;
      __m512i v = _mm512_broadcast_i32x4(x86::load_code_bytes<2 * BITS>(p));
      v = _mm512_shuffle_epi8(v, _mm512_load_si512(t.shuffle));
      v = _mm512_srlv_epi32(v, _mm512_load_si512(t.shift));
      if constexpr (SIGNED) return _mm512_srai_epi32(_mm512_slli_epi32(v, 32 - BITS), 32 - BITS);
      return _mm512_and_si512(v, _mm512_set1_epi32((1 << BITS) - 1));
    }
  }

  // 32 codes of 4 bits from 16 bytes as floats: even codes in lo, odd ones
  // in hi (see isa_generic.h). Codes are looked up (one permute each, which reads
  // only the low 4 bits of an index: the low nibble needs no mask), so
  // signed codes come out as they are, without a bias.
  template <bool SIGNED>
  static constexpr int kNibbleBias = 0;
  template <bool SIGNED>
  static void nibble_values(const uint8_t* p, F* lo, F* hi) {
    const F table = SIGNED ? _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1)
                           : _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    nibble_permute(p, table, lo, hi);
  }
  static void nibble_permute(const uint8_t* p, F table, F* lo, F* hi) {
    const __m512i v = _mm512_cvtepu8_epi32(x86::load_code_bytes<16>(p));
    *lo = _mm512_permutexvar_ps(v, table);
    *hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
  }
  static float half(uint16_t h) { return _cvtsh_ss(h); }

  // Up to 64 entries live in registers (permutes); 256 are gathered.
  template <int BITS>
  struct Lut {
    __m512 t[4];
    const float* table;
  };
  template <int BITS>
  static Lut<BITS> make_lut(const float* table) {  // table padded with zeros to >= 16 entries
    Lut<BITS> l;
    l.table = table;
    l.t[0] = _mm512_loadu_ps(table);
    if constexpr (BITS == 6) {
      for (int i = 1; i < 4; ++i) l.t[i] = _mm512_loadu_ps(table + 16 * i);
    }
    return l;
  }
  template <int BITS>
  static F lookup(const Lut<BITS>& lut, I idx) {
    if constexpr (BITS <= 4) {
      return _mm512_permutexvar_ps(idx, lut.t[0]);
    } else if constexpr (BITS == 6) {
      __m512 r01 = _mm512_permutex2var_ps(lut.t[0], idx, lut.t[1]);  // index bit 4 picks the table
      __m512 r23 = _mm512_permutex2var_ps(lut.t[2], idx, lut.t[3]);
      __mmask16 high = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(32));
      return _mm512_mask_blend_ps(high, r01, r23);
    } else {
      return _mm512_i32gather_ps(idx, lut.table, 4);
    }
  }
  static void nibble_lookup(const uint8_t* p, const Lut<4>& lut, F* lo, F* hi) { nibble_permute(p, lut.t[0], lo, hi); }
};

}  // namespace staticllm::mil

// AVX-512 kernels: 16 fp32 lanes, masked loads for the K tail, fp16 weights
// widened in registers with vcvtph2ps.
#include <immintrin.h>

#include "mil/kernels/gemm.h"
#include "mil/kernels/gemm_panel_impl.h"
#include "mil/kernels/isa_avx512.h"

namespace staticllm::mil {

namespace {

inline __m512 load_w(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load_w(const uint16_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
inline __m512 load_w(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load_w(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// One weight row times MB activation rows. Each row's products go to four
// chains (16-lane step s of K to chain s % 4, the masked K tail included),
// summed as (c0 + c1) + (c2 + c3) and then across lanes: the same order for
// every MB, so a row's result does not depend on how many rows share the call.
template <int MB, typename W>
void dot_rows(const float* x, int64_t K, const W* w, float* y, int64_t ldy) {
  __m512 acc[MB][4];
  for (int i = 0; i < MB; ++i)
    for (int c = 0; c < 4; ++c) acc[i][c] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) {
    for (int c = 0; c < 4; ++c) {
      const __m512 wv = load_w(w + k + 16 * c);
      for (int i = 0; i < MB; ++i) acc[i][c] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i * K + k + 16 * c), wv, acc[i][c]);
    }
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    if (k >= K) break;
    const __mmask16 mask = K - k >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (K - k)) - 1u);
    const __m512 wv = load_w(w + k, mask);
    for (int i = 0; i < MB; ++i) acc[i][c] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, x + i * K + k), wv, acc[i][c]);
    k += 16;
  }
  for (int i = 0; i < MB; ++i) {
    y[i * ldy] =
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]), _mm512_add_ps(acc[i][2], acc[i][3])));
  }
}

// Small M (decode, the attention of a decode step): the weight rows are read
// once, in order and one at a time, a single stream the hardware prefetcher
// follows (faster than interleaving several rows with software prefetches,
// most of all when other processes compete for memory); each row meets all
// M activation rows, four at a time, while it is in L1.
template <typename W>
void nt(const float* x, int64_t M, int64_t K, const W* w, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    const W* row = w + n * K;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) dot_rows<4>(x + m * K, K, row, y + m * ldy + n, ldy);
    switch (M - m) {
      case 3: dot_rows<3>(x + m * K, K, row, y + m * ldy + n, ldy); break;
      case 2: dot_rows<2>(x + m * K, K, row, y + m * ldy + n, ldy); break;
      case 1: dot_rows<1>(x + m * K, K, row, y + m * ldy + n, ldy); break;
      default: break;
    }
  }
}

}  // namespace

void gemm_nt_avx512(const float* x, int64_t M, int64_t K, const void* w, WeightType wt, float* y, int64_t ldy,
                    int64_t n0, int64_t n1) {
  if (M >= detail::kPanelMinM) {
    if (wt == WeightType::kF32)
      return detail::gemm_nt_panels<IsaAvx512>(x, M, K, static_cast<const float*>(w), y, ldy, n0, n1);
    return detail::gemm_nt_panels<IsaAvx512>(x, M, K, static_cast<const uint16_t*>(w), y, ldy, n0, n1);
  }
  if (wt == WeightType::kF32)
    nt(x, M, K, static_cast<const float*>(w), y, ldy, n0, n1);
  else
    nt(x, M, K, static_cast<const uint16_t*>(w), y, ldy, n0, n1);
}

void gemm_nn_avx512(const float* x, int64_t K, const void* b, WeightType bt, int64_t N, float* y, int64_t m0,
                    int64_t m1) {
  if (bt == WeightType::kF32)
    return detail::gemm_nn_panels<IsaAvx512>(x, K, static_cast<const float*>(b), N, y, m0, m1);
  detail::gemm_nn_panels<IsaAvx512>(x, K, static_cast<const uint16_t*>(b), N, y, m0, m1);
}

}  // namespace staticllm::mil

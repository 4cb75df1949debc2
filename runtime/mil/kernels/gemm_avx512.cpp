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

// MB activation rows x NB weight rows, accumulated over all of K. With
// PREFETCH, the next NB rows (contiguous after these) are fetched at the pace
// these are read: a GEMV reads each weight once, and short rows give the
// hardware prefetcher too little to lock on to.
template <int MB, int NB, bool PREFETCH, typename W>
void block(const float* x, int64_t K, const W* w, float* y, int64_t ldy) {
  __m512 acc[MB][NB];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_ps();
  const char* next = reinterpret_cast<const char*>(w + NB * K);
  constexpr int kLines = NB * 16 * static_cast<int>(sizeof(W)) / 64;  // cache lines read per step
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    if constexpr (PREFETCH) {
      for (int l = 0; l < kLines; ++l) _mm_prefetch(next + (k * NB * sizeof(W)) + l * 64, _MM_HINT_T0);
    }
    __m512 wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = load_w(w + j * K + k);
    for (int i = 0; i < MB; ++i) {
      __m512 xv = _mm512_loadu_ps(x + i * K + k);
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  if (k < K) {
    __mmask16 mask = static_cast<__mmask16>((1u << (K - k)) - 1u);
    __m512 wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = load_w(w + j * K + k, mask);
    for (int i = 0; i < MB; ++i) {
      __m512 xv = _mm512_maskz_loadu_ps(mask, x + i * K + k);
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) y[i * ldy + j] = _mm512_reduce_add_ps(acc[i][j]);
}

// The first pass over these NB weight rows fetches the next ones; later
// passes find them in cache.
template <int NB, typename W>
void rows(const float* x, int64_t M, int64_t K, const W* w, float* y, int64_t ldy) {
  int64_t m = 0;
  if (M >= 4) {
    block<4, NB, true>(x, K, w, y, ldy);
    for (m = 4; m + 4 <= M; m += 4) block<4, NB, false>(x + m * K, K, w, y + m * ldy, ldy);
  }
  for (; m < M; ++m) {
    if (m == 0)
      block<1, NB, true>(x + m * K, K, w, y + m * ldy, ldy);
    else
      block<1, NB, false>(x + m * K, K, w, y + m * ldy, ldy);
  }
}

template <typename W>
void nt(const float* x, int64_t M, int64_t K, const W* w, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  int64_t n = n0;
  if (M < 4) {  // decode: more rows in flight
    for (; n + 8 <= n1; n += 8) rows<8>(x, M, K, w + n * K, y + n, ldy);
  }
  for (; n + 4 <= n1; n += 4) rows<4>(x, M, K, w + n * K, y + n, ldy);
  for (; n < n1; ++n) rows<1>(x, M, K, w + n * K, y + n, ldy);
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

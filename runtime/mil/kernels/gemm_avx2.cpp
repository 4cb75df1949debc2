// AVX2 + FMA + F16C kernels: 8 fp32 lanes; the K tail runs in scalar code.
#include <immintrin.h>

#include "mil/half.h"
#include "mil/kernels/gemm.h"
#include "mil/kernels/gemm_panel_impl.h"
#include "mil/kernels/isa_avx2.h"

namespace staticllm::mil {

static_assert(kWholePanelCols % detail::kPanelCols<IsaAvx2> == 0, "kWholePanelCols must be whole panels");

namespace {

inline __m256 load_w(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load_w(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline float scalar_w(const float* p) { return *p; }
inline float scalar_w(const uint16_t* p) { return half_to_float(*p); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// MB activation rows x NB weight rows, accumulated over all of K. With
// PREFETCH, the next NB rows (contiguous after these) are fetched at the pace
// these are read (see gemm_avx512.cpp).
template <int MB, int NB, bool PREFETCH, typename W>
void block(const float* x, int64_t K, const W* w, float* y, int64_t ldy) {
  __m256 acc[MB][NB];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm256_setzero_ps();
  const char* next = reinterpret_cast<const char*>(w + NB * K);
  constexpr int kBytes = NB * 8 * static_cast<int>(sizeof(W));  // weight bytes read per step
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    if constexpr (PREFETCH) {
      for (int b = 0; b < kBytes; b += 64) _mm_prefetch(next + k * NB * sizeof(W) + b, _MM_HINT_T0);
    }
    __m256 wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = load_w(w + j * K + k);
    for (int i = 0; i < MB; ++i) {
      __m256 xv = _mm256_loadu_ps(x + i * K + k);
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MB; ++i) {
    for (int j = 0; j < NB; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t t = k; t < K; ++t) s += x[i * K + t] * scalar_w(w + j * K + t);
      y[i * ldy + j] = s;
    }
  }
}

// The first pass over these NB weight rows fetches the next ones; later
// passes find them in cache.
template <int MB, int NB, typename W>
void rows(const float* x, int64_t M, int64_t K, const W* w, float* y, int64_t ldy) {
  int64_t m = 0;
  if (M >= MB) {
    block<MB, NB, true>(x, K, w, y, ldy);
    for (m = MB; m + MB <= M; m += MB) block<MB, NB, false>(x + m * K, K, w, y + m * ldy, ldy);
  }
  for (; m < M; ++m) {
    if (m == 0)
      block<1, NB, true>(x, K, w, y, ldy);
    else
      block<1, NB, false>(x + m * K, K, w, y + m * ldy, ldy);
  }
}

// Prefill-sized M uses 4x3 blocks (12 accumulators + 3 weights + 1 input =
// the 16 ymm registers), decode-sized M 2x4 blocks.
template <typename W>
void nt(const float* x, int64_t M, int64_t K, const W* w, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  int64_t n = n0;
  if (M >= 4) {
    for (; n + 3 <= n1; n += 3) rows<4, 3>(x, M, K, w + n * K, y + n, ldy);
  } else {
    for (; n + 4 <= n1; n += 4) rows<2, 4>(x, M, K, w + n * K, y + n, ldy);
  }
  for (; n < n1; ++n) rows<2, 1>(x, M, K, w + n * K, y + n, ldy);
}

}  // namespace

void gemm_nt_avx2(const float* x, int64_t M, int64_t K, const void* w, WeightType wt, float* y, int64_t ldy, int64_t n0,
                  int64_t n1) {
  if (M >= detail::kPanelMinM) {
    if (wt == WeightType::kF32)
      return detail::gemm_nt_panels<IsaAvx2>(x, M, K, static_cast<const float*>(w), y, ldy, n0, n1);
    return detail::gemm_nt_panels<IsaAvx2>(x, M, K, static_cast<const uint16_t*>(w), y, ldy, n0, n1);
  }
  if (wt == WeightType::kF32)
    nt(x, M, K, static_cast<const float*>(w), y, ldy, n0, n1);
  else
    nt(x, M, K, static_cast<const uint16_t*>(w), y, ldy, n0, n1);
}

void gemm_nn_avx2(const float* x, int64_t K, const void* b, WeightType bt, int64_t N, float* y, int64_t m0,
                  int64_t m1) {
  if (bt == WeightType::kF32) return detail::gemm_nn_panels<IsaAvx2>(x, K, static_cast<const float*>(b), N, y, m0, m1);
  detail::gemm_nn_panels<IsaAvx2>(x, K, static_cast<const uint16_t*>(b), N, y, m0, m1);
}

}  // namespace staticllm::mil

// AVX-512 kernels: 16 fp32 lanes, masked loads for the K tail, fp16 weights
// widened in registers with vcvtph2ps.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "mil/kernels/gemm.h"
#include "mil/kernels/gemm_panel_impl.h"
#include "mil/kernels/isa_avx512.h"

namespace staticllm::mil {

static_assert(kWholePanelCols % detail::kPanelCols<IsaAvx512> == 0, "kWholePanelCols must be whole panels");

namespace {

using detail::kPanelMinM;

inline __m512 load_w(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load_w(const uint16_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
inline __m512 load_w(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load_w(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// One weight row times MB activation rows. Each row's products go to four
// chains (16-lane step s of K to chain s % 4, the masked K tail included),
// summed as (c0 + c1) + (c2 + c3) into out[i * kRowTile]: the lanes of
// output (i, row) before the sum across lanes.
constexpr int kRowTile = 16;

// The weight stream is fetched 4 KiB ahead into L2: the hardware prefetcher
// stops at each 4 KiB page, this runs past it. SmolLM2-135M decode on 2
// threads, medians of interleaved runs: none 54 (fp16) and 35 (fp32) tokens/s,
// into L1 (T0) 67 and 40, into L2 (T1) 75 and 44; NTA halves it. Integer
// arithmetic: the address may lie past the weight's end (a prefetch never faults).
inline void prefetch_ahead(const void* p) {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + 4096), _MM_HINT_T1);
}

template <int MB, typename W>
void dot_lanes(const float* x, int64_t K, const W* w, __m512* out) {
  __m512 acc[MB][4];
  for (int i = 0; i < MB; ++i)
    for (int c = 0; c < 4; ++c) acc[i][c] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) {
    for (int c = 0; c < 4; ++c) {
      if (sizeof(W) == 4 || c % 2 == 0) prefetch_ahead(w + k + 16 * c);  // each 64-byte line once
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
  for (int i = 0; i < MB; ++i)
    out[i * kRowTile] = _mm512_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]), _mm512_add_ps(acc[i][2], acc[i][3]));
}

// Lane j of the result is the sum of v[j]'s lanes, always in the same tree
// order: pairs of lanes two apart, then the pairs' sums, within each
// 128-bit quarter; then quarters (0 + 1) + (2 + 3). About 3 instructions an
// output instead of a full horizontal sum each (short rows, e.g. attention
// over head_dim 64, spend more on sums than on products).
inline __m512 sum_lanes16(const __m512* v) {
  __m512 t[8], u[4];
  for (int i = 0; i < 8; ++i) {
    t[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[2 * i]), b = _mm512_castps_pd(t[2 * i + 1]);
    u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  const __m512 w0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xDD));
  const __m512 w1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(w0, w1, 0x88), _mm512_shuffle_f32x4(w0, w1, 0xDD));
}

// Small M (decode, the attention of a decode step): the weight rows are read
// once, in order and one at a time, a single stream the prefetchers follow
// (prefetch_ahead carries it across pages; faster than interleaving several
// rows, most of all when other processes compete for memory); each row meets all
// M activation rows, four at a time, while it is in L1. Tiles of 16 rows
// are summed across lanes together (a partial tile padded with zeros), so
// an output's bits depend neither on M nor on where a tile starts.
template <typename W>
void nt(const float* x, int64_t M, int64_t K, const W* w, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  __m512 lanes[kPanelMinM - 1][kRowTile];
  for (int64_t n = n0; n < n1; n += kRowTile) {
    const int rows = static_cast<int>(std::min<int64_t>(kRowTile, n1 - n));
    for (int r = 0; r < rows; ++r) {
      const W* row = w + (n + r) * K;
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) dot_lanes<4>(x + m * K, K, row, &lanes[m][r]);
      switch (M - m) {
        case 3: dot_lanes<3>(x + m * K, K, row, &lanes[m][r]); break;
        case 2: dot_lanes<2>(x + m * K, K, row, &lanes[m][r]); break;
        case 1: dot_lanes<1>(x + m * K, K, row, &lanes[m][r]); break;
        default: break;
      }
    }
    const __mmask16 mask = static_cast<__mmask16>((1u << rows) - 1u);
    for (int64_t m = 0; m < M; ++m) {
      for (int r = rows; r < kRowTile; ++r) lanes[m][r] = _mm512_setzero_ps();
      _mm512_mask_storeu_ps(y + m * ldy + n, mask, sum_lanes16(lanes[m]));
    }
  }
}

}  // namespace

void gemm_nt_avx512(const float* x, int64_t M, int64_t K, const void* w, WeightType wt, float* y, int64_t ldy,
                    int64_t n0, int64_t n1) {
  if (M >= kPanelMinM) {
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

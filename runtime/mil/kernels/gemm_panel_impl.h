// Register-blocked GEMM over column panels, written once against the vector
// interface of the compressed kernels (IsaAvx2, IsaAvx512, IsaGeneric<N>)
// and instantiated per ISA file.
//
// A block of R rows of x times a panel of 2W columns of B keeps 2R
// accumulators in registers; each step of k broadcasts R values of x and
// loads one row of the panel (two vectors), so no horizontal sums are needed
// and each loaded value feeds R or 2 FMAs. For gemm_nn the panel is B itself
// (its rows are contiguous, fp16 widened as loaded); for gemm_nt the weight
// rows are transposed into a [K, 2W] fp32 panel first, W x W at a time in
// registers, which costs about 1/M of the product.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "mil/kernels/aligned_vector.h"

namespace staticllm::mil::detail {

template <class Isa>
inline typename Isa::F load_b(const float* p) {
  return Isa::load(p);
}
template <class Isa>
inline typename Isa::F load_b(const uint16_t* p) {
  return Isa::load_half(p);
}
template <class Isa>
inline typename Isa::F load_b_part(const float* p, int n) {
  return Isa::load_part(p, n);
}
template <class Isa>
inline typename Isa::F load_b_part(const uint16_t* p, int n) {
  return Isa::load_half_part(p, n);
}

// gemm_nt takes the panel path from this many rows of x (below, packing
// the weight would cost more than the horizontal sums it saves).
constexpr int64_t kPanelMinM = 16;

// Rows per register block: 2R accumulators, two panel vectors and a
// broadcast fill AVX-512's 32 registers at R = 8 (19) and AVX2's 16 at R = 6 (15).
template <class Isa>
constexpr int kPanelRows = Isa::W >= 16 ? 8 : 6;

// y[r * ldy + j] = sum_k x[r * ldx + k] * b[k * ldb + j]   for r < R, j < cols (<= 2W).
// Only `cols` columns of b are read and written.
template <class Isa, int R, typename T>
void panel_block(const float* x, int64_t ldx, const T* b, int64_t ldb, int64_t K, float* y, int64_t ldy, int cols) {
  using F = typename Isa::F;
  constexpr int W = Isa::W;
  F acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = Isa::zero();
  if (cols == 2 * W) {
    for (int64_t k = 0; k < K; ++k) {
      const F b0 = load_b<Isa>(b + k * ldb), b1 = load_b<Isa>(b + k * ldb + W);
      for (int r = 0; r < R; ++r) {
        const F a = Isa::set1(x[r * ldx + k]);
        acc[r][0] = Isa::fma(a, b0, acc[r][0]);
        acc[r][1] = Isa::fma(a, b1, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r) {
      Isa::store(y + r * ldy, acc[r][0]);
      Isa::store(y + r * ldy + W, acc[r][1]);
    }
    return;
  }
  const int c0 = std::min(cols, W), c1 = cols - c0;
  for (int64_t k = 0; k < K; ++k) {
    const F b0 = load_b_part<Isa>(b + k * ldb, c0);
    const F b1 = c1 > 0 ? load_b_part<Isa>(b + k * ldb + W, c1) : Isa::zero();
    for (int r = 0; r < R; ++r) {
      const F a = Isa::set1(x[r * ldx + k]);
      acc[r][0] = Isa::fma(a, b0, acc[r][0]);
      acc[r][1] = Isa::fma(a, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    Isa::store_part(y + r * ldy, acc[r][0], c0);
    if (c1 > 0) Isa::store_part(y + r * ldy + W, acc[r][1], c1);
  }
}

// The last M % kPanelRows rows: panel_block<R> for the R that is left.
template <class Isa, int R, typename T>
void panel_tail(int64_t rows, const float* x, int64_t ldx, const T* b, int64_t ldb, int64_t K, float* y, int64_t ldy,
                int cols) {
  if constexpr (R > 0) {
    if (rows == R) return panel_block<Isa, R>(x, ldx, b, ldb, K, y, ldy, cols);
    panel_tail<Isa, R - 1>(rows, x, ldx, b, ldb, K, y, ldy, cols);
  }
}

// All M rows of x (stride ldx) times one panel of `cols` (<= 2W) columns.
template <class Isa, typename T>
void panel_rows(const float* x, int64_t M, int64_t ldx, const T* b, int64_t ldb, int64_t K, float* y, int64_t ldy,
                int cols) {
  constexpr int R = kPanelRows<Isa>;
  int64_t m = 0;
  for (; m + R <= M; m += R) panel_block<Isa, R>(x + m * ldx, ldx, b, ldb, K, y + m * ldy, ldy, cols);
  panel_tail<Isa, R - 1>(M - m, x + m * ldx, ldx, b, ldb, K, y + m * ldy, ldy, cols);
}

// gemm_nn's contract (gemm.h): B [K, N] in its stored dtype, rows [m0, m1).
template <class Isa, typename T>
void gemm_nn_panels(const float* x, int64_t K, const T* b, int64_t N, float* y, int64_t m0, int64_t m1) {
  constexpr int P = 2 * Isa::W;
  for (int64_t n = 0; n < N; n += P) {
    const int cols = static_cast<int>(std::min<int64_t>(P, N - n));
    panel_rows<Isa>(x + m0 * K, m1 - m0, K, b + n, N, K, y + m0 * N + n, N, cols);
  }
}

// panel[k * 2W + j] = w[j * K + k] for j < cols, 0 for cols <= j < 2W.
template <class Isa, typename T>
void pack_transposed(const T* w, int64_t K, int cols, float* panel) {
  using F = typename Isa::F;
  constexpr int W = Isa::W;
  for (int h = 0; h < 2; ++h) {
    const int rows = std::clamp(cols - h * W, 0, W);
    for (int64_t k = 0; k < K; k += W) {
      const int len = static_cast<int>(std::min<int64_t>(W, K - k));
      F v[W];
      for (int j = 0; j < W; ++j) {
        const T* src = w + (h * W + j) * K + k;
        v[j] = j >= rows ? Isa::zero() : len == W ? load_b<Isa>(src) : load_b_part<Isa>(src, len);
      }
      Isa::transpose(v);
      for (int i = 0; i < len; ++i) Isa::store(panel + (k + i) * 2 * W + h * W, v[i]);
    }
  }
}

// gemm_nt's contract (gemm.h): w [N, K] in its stored dtype, columns [n0, n1).
template <class Isa, typename T>
void gemm_nt_panels(const float* x, int64_t M, int64_t K, const T* w, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  constexpr int P = 2 * Isa::W;
  thread_local AlignedVector<float> panel;
  panel.resize(static_cast<size_t>(K * P));
  for (int64_t n = n0; n < n1; n += P) {
    const int cols = static_cast<int>(std::min<int64_t>(P, n1 - n));
    pack_transposed<Isa>(w + n * K, K, cols, panel.data());
    panel_rows<Isa>(x, M, K, panel.data(), P, K, y + n, ldy, cols);
  }
}

}  // namespace staticllm::mil::detail

// Register-blocked GEMM over column panels, written once against the vector
// interface of the compressed kernels (IsaAvx2, IsaAvx512, IsaGeneric<N>)
// and instantiated per ISA file.
//
// A block of R rows of x times a panel of V vectors (V W columns) of B keeps
// R V accumulators in registers; each step of k broadcasts R values of x and
// loads one row of the panel (V vectors), so no horizontal sums are needed
// and each loaded value feeds R or V FMAs. For gemm_nn the panel is B itself
// (its rows are contiguous, fp16 widened as loaded); for gemm_nt the weight
// rows are transposed into a [K, V W] fp32 panel first, W x W at a time in
// registers, which costs about 1/M of the product.
#pragma once

#include <algorithm>
#include <cstdint>

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

// Rows per register block and vectors per panel row: R V accumulators, V
// panel vectors and a broadcast fill AVX-512's 32 registers at 8 x 3 (28)
// and AVX2's 16 at 6 x 2 (15). A broadcast costs about as much as an FMA's
// issue slot here, so a wider panel (fewer broadcasts per FMA) pays: 8 x 3
// against 8 x 2 on SmolLM2's projections at M = 128 was level in quiet
// moments and 58 against 53 % of the FMA peak while another tenant loaded
// the core (interleaved runs, one thread).
template <class Isa>
constexpr int kPanelRows = Isa::W >= 16 ? 8 : 6;
template <class Isa>
constexpr int kPanelVecs = Isa::W >= 16 ? 3 : 2;
template <class Isa>
constexpr int kPanelCols = kPanelVecs<Isa>* Isa::W;

// y[r * ldy + j] = sum_k x[r * ldx + k] * b[k * ldb + j]   for r < R, j < cols,
// (V - 1) W < cols <= V W. Only `cols` columns of b are read and written;
// FULL (cols = V W, the common case) leaves the loop without masks.
template <class Isa, int R, int V, bool FULL, typename T>
void panel_block(const float* x, int64_t ldx, const T* b, int64_t ldb, int64_t K, float* y, int64_t ldy, int cols) {
  using F = typename Isa::F;
  constexpr int W = Isa::W;
  const int last = FULL ? W : cols - (V - 1) * W;  // columns in the last vector
  F acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = Isa::zero();
  for (int64_t k = 0; k < K; ++k) {
    const T* row = b + k * ldb;
    F bv[V];
    for (int v = 0; v < V - 1; ++v) bv[v] = load_b<Isa>(row + v * W);
    bv[V - 1] = FULL ? load_b<Isa>(row + (V - 1) * W) : load_b_part<Isa>(row + (V - 1) * W, last);
    for (int r = 0; r < R; ++r) {
      const F a = Isa::set1(x[r * ldx + k]);
      for (int v = 0; v < V; ++v) acc[r][v] = Isa::fma(a, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V - 1; ++v) Isa::store(y + r * ldy + v * W, acc[r][v]);
    if (FULL)
      Isa::store(y + r * ldy + (V - 1) * W, acc[r][V - 1]);
    else
      Isa::store_part(y + r * ldy + (V - 1) * W, acc[r][V - 1], last);
  }
}

// The last M % kPanelRows rows: panel_block<R> for the R that is left.
template <class Isa, int R, int V, bool FULL, typename T>
void panel_tail(int64_t rows, const float* x, int64_t ldx, const T* b, int64_t ldb, int64_t K, float* y, int64_t ldy,
                int cols) {
  if constexpr (R > 0) {
    if (rows == R) return panel_block<Isa, R, V, FULL>(x, ldx, b, ldb, K, y, ldy, cols);
    panel_tail<Isa, R - 1, V, FULL>(rows, x, ldx, b, ldb, K, y, ldy, cols);
  }
}

// All M rows of x (stride ldx) times one panel of `cols` columns, V W of them
// at most, in blocks of R rows.
template <class Isa, int V, bool FULL, typename T>
void panel_rows_of(const float* x, int64_t M, int64_t ldx, const T* b, int64_t ldb, int64_t K, float* y, int64_t ldy,
                   int cols) {
  constexpr int R = kPanelRows<Isa>;
  int64_t m = 0;
  for (; m + R <= M; m += R) panel_block<Isa, R, V, FULL>(x + m * ldx, ldx, b, ldb, K, y + m * ldy, ldy, cols);
  panel_tail<Isa, R - 1, V, FULL>(M - m, x + m * ldx, ldx, b, ldb, K, y + m * ldy, ldy, cols);
}

// panel_rows_of with as many vectors as `cols` (<= kPanelCols) needs: a
// partial panel costs no FMAs on columns it lacks.
template <class Isa, int V = kPanelVecs<Isa>, typename T>
void panel_rows(const float* x, int64_t M, int64_t ldx, const T* b, int64_t ldb, int64_t K, float* y, int64_t ldy,
                int cols) {
  if constexpr (V > 1) {
    if (cols <= (V - 1) * Isa::W) return panel_rows<Isa, V - 1>(x, M, ldx, b, ldb, K, y, ldy, cols);
  }
  if (cols == V * Isa::W) return panel_rows_of<Isa, V, true>(x, M, ldx, b, ldb, K, y, ldy, cols);
  panel_rows_of<Isa, V, false>(x, M, ldx, b, ldb, K, y, ldy, cols);
}

// gemm_nn's contract (gemm.h): B [K, N] in its stored dtype, rows [m0, m1).
template <class Isa, typename T>
void gemm_nn_panels(const float* x, int64_t K, const T* b, int64_t N, float* y, int64_t m0, int64_t m1) {
  constexpr int P = kPanelCols<Isa>;
  for (int64_t n = 0; n < N; n += P) {
    const int cols = static_cast<int>(std::min<int64_t>(P, N - n));
    panel_rows<Isa>(x + m0 * K, m1 - m0, K, b + n, N, K, y + m0 * N + n, N, cols);
  }
}

// panel[k * P + j] = w[j * K + k] for j < cols, P = kPanelCols (columns past
// `cols` in its last vector are 0; whole vectors past it are not written).
template <class Isa, typename T>
void pack_transposed(const T* w, int64_t K, int cols, float* panel) {
  using F = typename Isa::F;
  constexpr int W = Isa::W, P = kPanelCols<Isa>;
  for (int h = 0; h * W < cols; ++h) {
    const int rows = std::clamp(cols - h * W, 0, W);
    for (int64_t k = 0; k < K; k += W) {
      const int len = static_cast<int>(std::min<int64_t>(W, K - k));
      F v[W];
      for (int j = 0; j < W; ++j) {
        const T* src = w + (h * W + j) * K + k;
        v[j] = j >= rows ? Isa::zero() : len == W ? load_b<Isa>(src) : load_b_part<Isa>(src, len);
      }
      Isa::transpose(v);
      for (int i = 0; i < len; ++i) Isa::store(panel + (k + i) * P + h * W, v[i]);
    }
  }
}

// gemm_nt's contract (gemm.h): w [N, K] in its stored dtype, columns [n0, n1).
template <class Isa, typename T>
void gemm_nt_panels(const float* x, int64_t M, int64_t K, const T* w, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  constexpr int P = kPanelCols<Isa>;
  thread_local AlignedVector<float> panel;
  panel.resize(static_cast<size_t>(K * P));
  for (int64_t n = n0; n < n1; n += P) {
    const int cols = static_cast<int>(std::min<int64_t>(P, n1 - n));
    pack_transposed<Isa>(w + n * K, K, cols, panel.data());
    panel_rows<Isa>(x, M, K, panel.data(), P, K, y + n, ldy, cols);
  }
}

}  // namespace staticllm::mil::detail

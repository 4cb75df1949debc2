// Weights executed as stored: the integer codes of a constexpr decompression
// (blockwise shift/scale, lookup table, affine dequantize) are read by the
// kernels and expanded to floats in registers, never into a dense tensor.
#pragma once

#include <cstdint>
#include <vector>

#include "mil/op.h"

namespace staticllm::mil {

// A constant of `type` (fp16/fp32, rank >= 2) seen as a [rows, cols] matrix:
// dimension 0 by the product of the others. Element (n, k) is
//   kScale: (code(n, k) - offset[g]) * scale[g]
//   kLut:   lut[g * (1 << bits) + code(n, k)]
// with group g = (n / row_block) * grid_cols + k / col_block, and code(n, k)
// the `bits`-wide integer at bit (n * cols + k) * bits of `codes`, least
// significant bits first (coremltools' packing), sign-extended if is_signed.
struct CompressedWeight {
  enum class Kind { kScale, kLut };
  Kind kind = Kind::kScale;
  ValueType type;  // the dense constant it stands for
  int64_t rows = 0, cols = 0;
  const uint8_t* codes = nullptr;
  int bits = 8;
  bool is_signed = false;
  int64_t row_block = 1, col_block = 1, grid_cols = 1;
  // kScale: one scale (and optional offset) per group, in their stored dtype.
  const void* scale = nullptr;
  DType scale_dtype = DType::kFloat32;
  const void* offset = nullptr;  // nullptr: no offset
  DType offset_dtype = DType::kFloat32;
  // kLut: one table of 1 << bits entries per group.
  const void* lut = nullptr;
  DType lut_dtype = DType::kFloat32;
  std::vector<Tensor> keep;  // owners of the memory the pointers above view

  int64_t groups() const { return (rows / row_block) * grid_cols; }
  // Scalar reference of element (n, k); the kernels must agree with it.
  float at(int64_t n, int64_t k) const;
};

// Which kernels exist for a weight (the builders fall back to a dense
// constant for anything else): kScale with 4- or 8-bit codes, kLut with
// 1, 2, 3, 4, 6 or 8-bit codes.
bool compressed_kernel_supports(const CompressedWeight& w);

// y[m * ldy + n] = sum_k x[m * cols + k] * W(n, k)   for m < M, n in [n0, n1).
void gemm_nt_compressed(const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t ldy, int64_t n0,
                        int64_t n1);
// out[k] = W(n, k) for k < cols, for rows n in [n0, n1) (out advances by cols per row).
void decode_compressed_rows(const CompressedWeight& w, int64_t n0, int64_t n1, float* out);
// The block of rows [n0, n1) and columns [c0, c1): out advances by c1 - c0 per row.
void decode_compressed_block(const CompressedWeight& w, int64_t n0, int64_t n1, int64_t c0, int64_t c1, float* out);
// The dense constant (type.dtype), e.g. for an op without a compressed kernel.
Tensor materialize_compressed(const CompressedWeight& w);

// Per-ISA entry points (compressed_portable.cpp, compressed_avx2.cpp, compressed_avx512.cpp).
void gemm_nt_compressed_portable(const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t ldy,
                                 int64_t n0, int64_t n1);
void gemm_nt_compressed_avx2(const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t ldy, int64_t n0,
                             int64_t n1);
void gemm_nt_compressed_avx512(const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t ldy, int64_t n0,
                               int64_t n1);
void decode_compressed_rows_portable(const CompressedWeight& w, int64_t n0, int64_t n1, float* out);
void decode_compressed_rows_avx2(const CompressedWeight& w, int64_t n0, int64_t n1, float* out);
void decode_compressed_rows_avx512(const CompressedWeight& w, int64_t n0, int64_t n1, float* out);
void decode_compressed_block_portable(const CompressedWeight& w, int64_t n0, int64_t n1, int64_t c0, int64_t c1,
                                      float* out);
void decode_compressed_block_avx2(const CompressedWeight& w, int64_t n0, int64_t n1, int64_t c0, int64_t c1,
                                  float* out);
void decode_compressed_block_avx512(const CompressedWeight& w, int64_t n0, int64_t n1, int64_t c0, int64_t c1,
                                    float* out);

}  // namespace staticllm::mil

// Run-time choice of the compressed-weight kernels, and the scalar forms.
#include "mil/kernels/compressed.h"

#include <algorithm>

#include "mil/cpu_features.h"
#include "mil/kernels/compressed_impl.h"

namespace staticllm::mil {

float CompressedWeight::at(int64_t n, int64_t k) const {
  const int64_t g = (n / row_block) * grid_cols + k / col_block;
  const int32_t code = detail::code_at(*this, n * cols + k);
  if (kind == Kind::kLut) return detail::load_float(lut, lut_dtype, (g << bits) + code);
  const float off = offset != nullptr ? detail::load_float(offset, offset_dtype, g) : 0.f;
  return (static_cast<float>(code) - off) * detail::load_float(scale, scale_dtype, g);
}

bool compressed_kernel_supports(const CompressedWeight& w) {
  if (w.rows <= 0 || w.cols <= 0 || w.row_block <= 0 || w.col_block <= 0) return false;
  if (w.kind == CompressedWeight::Kind::kScale) return w.bits == 4 || w.bits == 8;
  return w.bits == 1 || w.bits == 2 || w.bits == 3 || w.bits == 4 || w.bits == 6 || w.bits == 8;
}

void gemm_nt_compressed(const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t ldy, int64_t n0,
                        int64_t n1) {
#if defined(STATICLLM_X86_SIMD)
  switch (simd_level()) {
    case SimdLevel::kAvx512: return gemm_nt_compressed_avx512(x, M, w, y, ldy, n0, n1);
    case SimdLevel::kAvx2: return gemm_nt_compressed_avx2(x, M, w, y, ldy, n0, n1);
    default: break;
  }
#endif
  gemm_nt_compressed_portable(x, M, w, y, ldy, n0, n1);
}

void decode_compressed_rows(const CompressedWeight& w, int64_t n0, int64_t n1, float* out) {
#if defined(STATICLLM_X86_SIMD)
  switch (simd_level()) {
    case SimdLevel::kAvx512: return decode_compressed_rows_avx512(w, n0, n1, out);
    case SimdLevel::kAvx2: return decode_compressed_rows_avx2(w, n0, n1, out);
    default: break;
  }
#endif
  decode_compressed_rows_portable(w, n0, n1, out);
}

void decode_compressed_block(const CompressedWeight& w, int64_t n0, int64_t n1, int64_t c0, int64_t c1, float* out) {
#if defined(STATICLLM_X86_SIMD)
  switch (simd_level()) {
    case SimdLevel::kAvx512: return decode_compressed_block_avx512(w, n0, n1, c0, c1, out);
    case SimdLevel::kAvx2: return decode_compressed_block_avx2(w, n0, n1, c0, c1, out);
    default: break;
  }
#endif
  decode_compressed_block_portable(w, n0, n1, c0, c1, out);
}

Tensor materialize_compressed(const CompressedWeight& w) {
  Tensor out(w.type.dtype, w.type.shape);
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t n = 0; n < w.rows; ++n) {
    float* dst = w.type.dtype == DType::kFloat32 ? out.data_as<float>() + n * w.cols : row.data();
    decode_compressed_rows(w, n, n + 1, dst);
    if (w.type.dtype == DType::kFloat16) float_to_half_n(row.data(), out.data_as<half_bits>() + n * w.cols, w.cols);
  }
  return out;
}

}  // namespace staticllm::mil

// Compressed-weight kernels on AVX2 + FMA (8 lanes).
#include "mil/kernels/compressed_impl.h"
#include "mil/kernels/isa_avx2.h"

namespace staticllm::mil {

void gemm_nt_compressed_avx2(const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t ldy, int64_t n0,
                             int64_t n1) {
  detail::gemm_nt_compressed_impl<IsaAvx2>(x, M, w, y, ldy, n0, n1, gemm_nt_avx2);
}

void decode_compressed_rows_avx2(const CompressedWeight& w, int64_t n0, int64_t n1, float* out) {
  detail::decode_compressed_rows_impl<IsaAvx2>(w, n0, n1, out);
}

void decode_compressed_block_avx2(const CompressedWeight& w, int64_t n0, int64_t n1, int64_t c0, int64_t c1,
                                  float* out) {
  detail::decode_compressed_block_impl<IsaAvx2>(w, n0, n1, c0, c1, out);
}

}  // namespace staticllm::mil

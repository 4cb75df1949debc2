// Compressed-weight kernels on AVX-512 (16 lanes).
#include "mil/kernels/compressed_impl.h"
#include "mil/kernels/isa_avx512.h"

namespace staticllm::mil {

void gemm_nt_compressed_avx512(const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t ldy, int64_t n0,
                               int64_t n1) {
  detail::gemm_nt_compressed_impl<IsaAvx512>(x, M, w, y, ldy, n0, n1, gemm_nt_avx512);
}

void decode_compressed_rows_avx512(const CompressedWeight& w, int64_t n0, int64_t n1, float* out) {
  detail::decode_compressed_rows_impl<IsaAvx512>(w, n0, n1, out);
}

void decode_compressed_block_avx512(const CompressedWeight& w, int64_t n0, int64_t n1, int64_t c0, int64_t c1,
                                    float* out) {
  detail::decode_compressed_block_impl<IsaAvx512>(w, n0, n1, c0, c1, out);
}

}  // namespace staticllm::mil

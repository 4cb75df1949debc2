// The constants of the vector exp (Isa::exp in isa_generic.h, isa_avx2.h,
// isa_avx512.h), shared so that every SIMD level computes the same function.
#pragma once

namespace staticllm::mil {

// e^x as x = n ln2 + r, |r| <= ln2 / 2: 2^n (built in the exponent bits)
// times a degree-7 polynomial for e^r (Cephes' expf coefficients), about
// 2 ulp. Below kMin the result is 0 (as e^-inf, the masked scores of a
// softmax); above kMax it is e^kMax (the kernels call it for x <= 0).
namespace exp_poly {
constexpr float kMin = -87.33654f, kMax = 88.0f;
constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kC[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                         4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
}  // namespace exp_poly

}  // namespace staticllm::mil

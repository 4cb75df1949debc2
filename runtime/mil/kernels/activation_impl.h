// silu_n and sigmoid_n written once against the vector interface
// (isa_generic.h) and instantiated per ISA file.
#pragma once

#include <cstdint>

namespace staticllm::mil::detail {

// out[i] = (Numerator ? x[i] : 1) / (1 + e^-x[i]). A large -x saturates the
// exp at e^88 (exp_poly), so the quotient goes to 0 without overflow.
template <class Isa, bool Numerator>
void logistic_n(const float* x, float* out, int64_t n) {
  using F = typename Isa::F;
  constexpr int W = Isa::W;
  const F one = Isa::set1(1.f);
  auto f = [&](F v) {
    const F den = Isa::add(one, Isa::exp(Isa::sub(Isa::zero(), v)));
    return Isa::div(Numerator ? v : one, den);
  };
  int64_t i = 0;
  for (; i + W <= n; i += W) Isa::store(out + i, f(Isa::load(x + i)));
  if (i < n) {
    const int tail = static_cast<int>(n - i);
    Isa::store_part(out + i, f(Isa::load_part(x + i, tail)), tail);
  }
}

}  // namespace staticllm::mil::detail

// softmax_row written once against the vector interface (isa_generic.h) and
// instantiated per ISA file.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

namespace staticllm::mil::detail {

template <class Isa>
void softmax_row_impl(const float* x, float* out, int64_t n) {
  using F = typename Isa::F;
  constexpr int W = Isa::W;
  const int64_t whole = n / W * W;
  const int tail = static_cast<int>(n - whole);
  F mv = Isa::set1(-std::numeric_limits<float>::infinity());
  for (int64_t k = 0; k < whole; k += W) mv = Isa::max(mv, Isa::load(x + k));
  alignas(64) float lanes[W];
  Isa::store(lanes, mv);
  float m = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < W; ++i) m = std::max(m, lanes[i]);
  for (int64_t k = whole; k < n; ++k) m = std::max(m, x[k]);
  const F shift = Isa::set1(m);
  F sum = Isa::zero();
  for (int64_t k = 0; k < whole; k += W) {
    const F e = Isa::exp(Isa::sub(Isa::load(x + k), shift));
    Isa::store(out + k, e);
    sum = Isa::add(sum, e);
  }
  float total = Isa::hsum(sum);
  if (tail > 0) {  // lanes past n are not summed
    Isa::store_part(out + whole, Isa::exp(Isa::sub(Isa::load_part(x + whole, tail), shift)), tail);
    for (int64_t k = whole; k < n; ++k) total += out[k];
  }
  const F inv = Isa::set1(1.0f / total);
  for (int64_t k = 0; k < whole; k += W) Isa::store(out + k, Isa::mul(Isa::load(out + k), inv));
  for (int64_t k = whole; k < n; ++k) out[k] *= 1.0f / total;
}

}  // namespace staticllm::mil::detail

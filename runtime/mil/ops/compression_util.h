// Shared by the weight decompression families (quantization.cpp,
// sparsity.cpp): block broadcasting of per-group parameters (scales,
// offsets, lookup tables) and palette expansion.
#pragma once

#include <string>
#include <vector>

#include "mil/ops/elementwise_util.h"
#include "staticllm/errors.h"

namespace staticllm::mil {

// A (small, constant) tensor's values as fp32; integers are exact up to 2^24.
inline std::vector<float> as_floats(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  const float* p = floats_of(t, v.data());
  if (p != v.data()) std::copy(p, p + v.size(), v.begin());
  return v;
}

inline void store_floats(Tensor& out, const std::vector<float>& v) { store_floats(out, v.data()); }

// Maps each element of `shape` to the element of a block-broadcast tensor of
// shape `small` (each dim of shape a multiple of the matching dim of small).
struct BlockIndex {
  Shape shape, small;
  std::vector<int64_t> block, small_strides;

  bool init(const Shape& big, const Shape& s) {
    if (big.size() != s.size()) return false;
    shape = big;
    small = s;
    block.resize(big.size());
    for (size_t d = 0; d < big.size(); ++d) {
      if (s[d] <= 0 || big[d] % s[d] != 0) return false;
      block[d] = big[d] / s[d];
    }
    small_strides = contiguous_strides(s);
    return true;
  }

  template <typename F>
  void for_each(F&& fn) const {  // fn(element index, small index)
    int64_t n = shape_numel(shape), rank = static_cast<int64_t>(shape.size());
    std::vector<int64_t> idx(rank, 0);
    for (int64_t i = 0; i < n; ++i) {
      int64_t si = 0;
      for (int64_t d = 0; d < rank; ++d) si += (idx[d] / block[d]) * small_strides[d];
      fn(i, si);
      for (int64_t d = rank - 1; d >= 0; --d) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
  }
};

// Palettization: each index of `idx` (shape `groups.shape`) picks vector k of
// its group's table in `lut` ([groups, palette, vec]), laid along the vector
// axis, whose size is `dim` with `after` elements behind it. `out` holds
// numel(idx) * vec values.
inline void expand_palette(const std::vector<float>& idx, const std::vector<float>& lut, const BlockIndex& groups,
                           int64_t palette, int64_t vec, int64_t dim, int64_t after, float* out,
                           const std::string& where) {
  groups.for_each([&](int64_t i, int64_t g) {
    auto k = static_cast<int64_t>(idx[i]);
    if (k < 0 || k >= palette) throw BundleError("op '" + where + "': palette index out of range");
    const int64_t before = i / (dim * after), j = (i / after) % dim, rest = i % after;
    for (int64_t v = 0; v < vec; ++v)
      out[(before * dim * vec + j * vec + v) * after + rest] = lut[(g * palette + k) * vec + v];
  });
}

}  // namespace staticllm::mil

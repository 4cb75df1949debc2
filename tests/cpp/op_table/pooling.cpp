// Op-table entries of runtime/mil/ops/pooling.cpp: 1D, 2D and 3D windows,
// valid / same / same_lower / custom padding, ceil_mode, and averages with
// and without the padded positions. Output sizes are written out by hand;
// the reference pools in double over exactly those windows.
#include <cmath>
#include <limits>

#include "op_table.h"

namespace staticllm::test::optable {
namespace {

enum class Kind { kMax, kAvg, kAvgExcludingPad, kL2 };

struct Geometry {
  std::vector<int64_t> kernel, stride, pad_before, pad_after, out;
};

// Odometer step over a multi-index; false after the last one.
bool next_window(std::vector<int64_t>& idx, const std::vector<int64_t>& size) {
  for (int64_t d = static_cast<int64_t>(size.size()) - 1; d >= 0; --d) {
    if (++idx[d] < size[d]) return true;
    idx[d] = 0;
  }
  return false;
}

// Pools x [N, C, *D] with windows starting at o * stride - pad_before. An
// average divides by the window positions inside the padded input (or only
// by the real elements with kAvgExcludingPad).
Array ref_pool(const Array& x, Kind kind, const Geometry& g) {
  size_t n = g.kernel.size();
  Shape in(x.shape.begin() + 2, x.shape.end());
  Shape out_shape = {x.shape[0], x.shape[1]};
  out_shape.insert(out_shape.end(), g.out.begin(), g.out.end());
  int64_t in_plane = shape_numel(in);
  Array out{x.dtype, out_shape, {}};
  std::vector<int64_t> o(n, 0), w(n, 0);
  for (int64_t pl = 0; pl < x.shape[0] * x.shape[1]; ++pl) {
    std::fill(o.begin(), o.end(), 0);
    do {
      double acc = kind == Kind::kMax ? -std::numeric_limits<double>::infinity() : 0;
      int64_t valid = 0, counted = 0;
      std::fill(w.begin(), w.end(), 0);
      do {
        bool inside = true, padded_inside = true;
        int64_t off = 0;
        for (size_t d = 0; d < n; ++d) {
          int64_t i = o[d] * g.stride[d] - g.pad_before[d] + w[d];
          inside = inside && i >= 0 && i < in[d];
          padded_inside = padded_inside && i < in[d] + g.pad_after[d];
          off = off * in[d] + i;
        }
        counted += padded_inside;
        if (!inside) continue;
        double v = x.v[pl * in_plane + off];
        ++valid;
        acc = kind == Kind::kMax ? std::max(acc, v) : acc + (kind == Kind::kL2 ? v * v : v);
      } while (next_window(w, g.kernel));
      if (kind == Kind::kL2) acc = std::sqrt(acc);
      if (kind == Kind::kAvg) acc /= static_cast<double>(counted);
      if (kind == Kind::kAvgExcludingPad) acc /= static_cast<double>(valid);
      out.v.push_back(acc);
    } while (next_window(o, g.out));
  }
  return out;
}

Entry pool(const std::string& type, const std::string& what, Spec x, Kind kind, Geometry g) {
  return op(type, what)
      .in("x", std::move(x))
      .ints("kernel_sizes", {g.kernel.begin(), g.kernel.end()})
      .ints("strides", {g.stride.begin(), g.stride.end()})
      .reference([kind, g](const Inputs& in) { return std::vector<Array>{ref_pool(in["x"], kind, g)}; });
}

std::vector<Entry> pooling_entries() {
  Spec x2d = F({1, 2, 4, 5}, values_in(40, -3, 3, 31));
  return {
      pool("max_pool", "2D 2x2 stride 2, valid", x2d, Kind::kMax, {{2, 2}, {2, 2}, {0, 0}, {0, 0}, {2, 2}})
          .string("pad_type", "valid"),
      pool("max_pool", "1D kernel 2 stride 2, ceil_mode", F({1, 3, 5}, values_in(15, -3, 3, 32)), Kind::kMax,
           {{2}, {2}, {0}, {1}, {3}})
          .string("pad_type", "valid")
          .flag("ceil_mode", true),
      pool("max_pool", "2D 3x3 same_lower (extra padding before)", x2d, Kind::kMax,
           {{3, 2}, {1, 1}, {1, 1}, {1, 0}, {4, 5}})
          .string("pad_type", "same_lower"),
      pool("avg_pool", "2D 3x3 same, padding counted", x2d, Kind::kAvg, {{3, 3}, {1, 1}, {1, 1}, {1, 1}, {4, 5}})
          .string("pad_type", "same"),
      pool("avg_pool", "2D 3x3 same, padding excluded", x2d, Kind::kAvgExcludingPad,
           {{3, 3}, {1, 1}, {1, 1}, {1, 1}, {4, 5}})
          .string("pad_type", "same")
          .flag("exclude_padding_from_average", true),
      pool("avg_pool", "3D 2x2x2", F({1, 1, 2, 3, 4}, values_in(24, -3, 3, 33)), Kind::kAvg,
           {{2, 2, 2}, {1, 1, 2}, {0, 0, 0}, {0, 0, 0}, {1, 2, 2}})
          .string("pad_type", "valid"),
      pool("l2_pool", "1D kernel 2, custom pad (1, 2)", F({2, 1, 5}, values_in(10, -3, 3, 34)), Kind::kL2,
           {{2}, {1}, {1}, {2}, {7}})
          .string("pad_type", "custom")
          .ints("pad", {1, 2}),
  };
}

[[maybe_unused]] const bool registered = add_entries(pooling_entries());

}  // namespace
}  // namespace staticllm::test::optable

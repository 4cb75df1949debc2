// Op-table entries of runtime/mil/ops/conv.cpp against a direct
// double-precision convolution: 1D, 2D and 3D; strides, dilations, groups
// (depthwise included); every pad_type; with and without bias; the 1x1
// (B, C, 1, S) layout of the Neural Engine export; a weight given at run time
// and an fp16 weight under fp32 activations; sizes large enough to be split
// over the thread pool. conv_transpose likewise, with output_shape.
#include <algorithm>
#include <array>

#include "op_table.h"

namespace staticllm::test::optable {
namespace {

struct ConvArgs {
  std::vector<double> strides, dilations, pad;  // empty: the op's default
  std::string pad_type;                         // empty: not given (valid)
  int64_t groups = 0;                           // 0: not given (1)
};

// One spatial axis of the reference, the leading absent ones of size 1.
struct RefAxis {
  int64_t in = 1, out = 1, kernel = 1, stride = 1, dilation = 1, pad = 0;
};

// The axes of x [N, C, *spatial] and a weight [*, *, *kernel] with the
// padding coremltools defines for each pad_type (ops/defs/_utils.py).
std::array<RefAxis, 3> ref_axes(const Shape& x, const Shape& w, const ConvArgs& a) {
  std::array<RefAxis, 3> ax;
  const size_t dims = x.size() - 2, skip = 3 - dims;
  for (size_t i = 0; i < dims; ++i) {
    RefAxis& r = ax[skip + i];
    r.in = x[2 + i];
    r.kernel = w[2 + i];
    r.stride = a.strides.empty() ? 1 : static_cast<int64_t>(a.strides[i]);
    r.dilation = a.dilations.empty() ? 1 : static_cast<int64_t>(a.dilations[i]);
    const int64_t span = (r.kernel - 1) * r.dilation + 1;
    if (a.pad_type == "same" || a.pad_type == "same_lower") {
      r.out = (r.in + r.stride - 1) / r.stride;
      const int64_t total = std::max<int64_t>(0, (r.out - 1) * r.stride + span - r.in);
      r.pad = a.pad_type == "same" ? total / 2 : total - total / 2;
    } else {
      const bool custom = a.pad_type == "custom" && !a.pad.empty();
      const int64_t before = custom ? static_cast<int64_t>(a.pad[2 * i]) : 0;
      const int64_t after = custom ? static_cast<int64_t>(a.pad[2 * i + 1]) : 0;
      r.pad = before;
      r.out = (r.in + before + after - span) / r.stride + 1;
    }
  }
  return ax;
}

// out[n, o, p] = bias[o] + sum over the group's input channels and the kernel
// of x[n, c, p * stride + k * dilation - pad] w[o, c, k], out-of-range x as 0.
Array conv_reference(const Inputs& in, const ConvArgs& a) {
  const Array &x = in["x"], &w = in["weight"];
  const std::array<RefAxis, 3> ax = ref_axes(x.shape, w.shape, a);
  const int64_t N = x.shape[0], C = x.shape[1], O = w.shape[0], G = a.groups ? a.groups : 1;
  const int64_t cg = C / G, og = O / G;
  Shape out_shape = {N, O};
  for (size_t i = 3 - (x.shape.size() - 2); i < 3; ++i) out_shape.push_back(ax[i].out);
  Array y{x.dtype, out_shape, std::vector<double>(static_cast<size_t>(shape_numel(out_shape)))};
  size_t idx = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t od = 0; od < ax[0].out; ++od)
        for (int64_t oh = 0; oh < ax[1].out; ++oh)
          for (int64_t ow = 0; ow < ax[2].out; ++ow) {
            double s = in.has("bias") ? in["bias"].v[o] : 0.0;
            for (int64_t c = 0; c < cg; ++c)
              for (int64_t kd = 0; kd < ax[0].kernel; ++kd)
                for (int64_t kh = 0; kh < ax[1].kernel; ++kh)
                  for (int64_t kw = 0; kw < ax[2].kernel; ++kw) {
                    const int64_t id = od * ax[0].stride + kd * ax[0].dilation - ax[0].pad;
                    const int64_t ih = oh * ax[1].stride + kh * ax[1].dilation - ax[1].pad;
                    const int64_t iw = ow * ax[2].stride + kw * ax[2].dilation - ax[2].pad;
                    if (id < 0 || id >= ax[0].in || ih < 0 || ih >= ax[1].in || iw < 0 || iw >= ax[2].in) continue;
                    const int64_t ci = (o / og) * cg + c;
                    s += x.v[(((n * C + ci) * ax[0].in + id) * ax[1].in + ih) * ax[2].in + iw] *
                         w.v[(((o * cg + c) * ax[0].kernel + kd) * ax[1].kernel + kh) * ax[2].kernel + kw];
                  }
            y.v[idx++] = s;
          }
  return y;
}

Spec values(Shape shape, uint32_t seed) {
  int64_t n = shape_numel(shape);
  return F(std::move(shape), values_in(n, -1, 1, seed));
}

Entry& with_args(Entry& e, const ConvArgs& a) {
  if (!a.strides.empty()) e.ints("strides", a.strides);
  if (!a.dilations.empty()) e.ints("dilations", a.dilations);
  if (!a.pad.empty()) e.ints("pad", a.pad);
  if (!a.pad_type.empty()) e.string("pad_type", a.pad_type);
  if (a.groups) e.scalar_int("groups", a.groups);
  return e;
}

// A conv entry with a constant weight (and bias if `bias`), values in [-1, 1).
Entry conv(const std::string& what, Shape x, Shape w, ConvArgs a, bool bias, uint32_t seed) {
  const int64_t c_out = w[0];
  Entry e = op("conv", what).in("x", values(std::move(x), seed)).konst("weight", values(std::move(w), seed + 1));
  if (bias) e.konst("bias", values({c_out}, seed + 2));
  with_args(e, a);
  return e.reference([a](const Inputs& in) { return std::vector<Array>{conv_reference(in, a)}; })
      .tol32(1e-5, 1e-5)
      .tol16(1e-3, 2e-3);
}

std::vector<Entry> convs() {
  Entry runtime_weight = op("conv", "weight and bias given at run time (iOS17), custom pad, stride 2")
                             .in("x", values({1, 3, 8, 7}, 40))
                             .in("weight", values({4, 3, 2, 3}, 41))
                             .in("bias", values({4}, 42));
  with_args(runtime_weight, {{2, 2}, {}, {1, 0, 2, 1}, "custom", 0})
      .reference([](const Inputs& in) {
        return std::vector<Array>{conv_reference(in, {{2, 2}, {}, {1, 0, 2, 1}, "custom", 0})};
      })
      .tol32(1e-5, 1e-5)
      .tol16(1e-3, 2e-3);
  Entry mixed = op("conv", "fp32 x, fp16 weight and bias (iOS17)")
                    .in("x", Typed(DType::kFloat32, {2, 5, 9}, values_in(90, -1, 1, 50)))
                    .konst("weight", Typed(DType::kFloat16, {3, 5, 3}, values_in(45, -1, 1, 51)))
                    .konst("bias", Typed(DType::kFloat16, {3}, values_in(3, -1, 1, 52)));
  with_args(mixed, {{}, {}, {}, "same", 0})
      .reference([](const Inputs& in) {
        Array y = conv_reference(in, {{}, {}, {}, "same", 0});
        y.dtype = DType::kFloat32;
        return std::vector<Array>{y};
      })
      .tol32(1e-5, 1e-5);
  return {
      conv("1D, stride 2, valid, bias", {2, 4, 11}, {6, 4, 3}, {{2}, {}, {}, "valid", 0}, true, 1),
      conv("1x1 on (B, C, 1, S) data: linear's product", {2, 19, 1, 7}, {13, 19, 1, 1}, {}, true, 4),
      conv("1x1 on (B, C, 1, 1) data: one position", {3, 21, 1, 1}, {18, 21, 1, 1}, {}, true, 37),
      conv("1x1 with padding after: zero columns, not a transpose", {1, 5, 3, 4}, {3, 5, 1, 1},
           {{}, {}, {0, 1, 0, 2}, "custom", 0}, true, 38),
      conv("1x1 in 3 groups on 35 positions", {2, 18, 5, 7}, {9, 6, 1, 1}, {{}, {}, {}, "valid", 3}, true, 39),
      conv("2D same, strides [2, 1], dilations [1, 2]", {1, 3, 9, 10}, {4, 3, 3, 2}, {{2, 1}, {1, 2}, {}, "same", 0},
           false, 7),
      conv("2D same with an even kernel: the odd pad element after", {1, 2, 6, 7}, {3, 2, 2, 4},
           {{}, {}, {}, "same", 0}, true, 10),
      conv("2D same_lower, strides [1, 2]: the odd pad element before", {1, 2, 6, 7}, {3, 2, 2, 4},
           {{1, 2}, {}, {}, "same_lower", 0}, false, 13),
      conv("2D custom pad [1, 0, 2, 1], groups 2, dilations [2, 1]", {2, 4, 7, 8}, {6, 2, 3, 3},
           {{}, {2, 1}, {1, 0, 2, 1}, "custom", 2}, true, 16),
      conv("depthwise (groups = C) with 2 outputs per channel, same, stride 3", {1, 5, 10, 9}, {10, 1, 3, 3},
           {{3, 3}, {}, {}, "same", 5}, true, 19),
      conv("3D, strides [2, 1, 2], custom pad", {1, 2, 5, 6, 7}, {4, 2, 2, 3, 2},
           {{2, 1, 2}, {}, {1, 1, 0, 1, 1, 0}, "custom", 0}, true, 22),
      conv("3D same_lower, groups 2, dilation 2", {1, 4, 4, 5, 6}, {2, 2, 2, 2, 3},
           {{}, {2, 1, 2}, {}, "same_lower", 2}, false, 25),
      conv("pad ignored unless pad_type is custom", {1, 2, 5}, {3, 2, 2}, {{}, {}, {3, 3}, "valid", 0}, false, 28),
      conv("1x1 [1, 32, 1, 64] x [96, 32]: output channels split over the thread pool", {1, 32, 1, 64}, {96, 32, 1, 1},
           {}, false, 31),
      conv("3x3 same on 16 x 24 x 24: im2col and output split over the thread pool", {1, 16, 24, 24}, {16, 16, 3, 3},
           {{}, {}, {}, "same", 0}, true, 34),
      conv("groups 2 with 16 outputs each, 81 positions", {1, 8, 9, 9}, {32, 4, 3, 3}, {{}, {}, {}, "same", 2}, true,
           43),
      conv("5x5 over 24 channels, 300 positions: more than one tile", {1, 24, 15, 20}, {8, 24, 5, 5},
           {{}, {}, {2, 2, 2, 2}, "custom", 0}, true, 46),
      conv("one input channel to 6, dilation 2, stride 2", {2, 1, 11, 9}, {6, 1, 3, 2}, {{2, 2}, {2, 2}, {}, "same", 0},
           true, 49),
      conv("depthwise 3x3 on 12 x 11, same", {1, 4, 12, 11}, {4, 1, 3, 3}, {{}, {}, {}, "same", 4}, true, 52),
      conv("1x1 64 -> 64 in 2 groups over 2200 positions: more than one tile", {1, 64, 2, 1100}, {64, 32, 1, 1},
           {{}, {}, {}, "valid", 2}, true, 55),
      conv("1x1 in 2 groups of 80 channels on 40 positions", {1, 160, 1, 40}, {8, 80, 1, 1}, {{}, {}, {}, "", 2}, true,
           58),
      runtime_weight,
      mixed,
  };
}

// conv_transpose: out[n, g * C_out/g + o, p * stride + k * dilation - crop] +=
// x[n, c, p] w[c, o, k] for the group's input channels c, with the crop and
// output size coremltools defines for each pad_type (ops/defs/iOS15/conv.py)
// and output_shape.
Array conv_transpose_reference(const Inputs& in, const ConvArgs& a, const std::vector<double>& output_shape) {
  const Array &x = in["x"], &w = in["weight"];
  const size_t dims = x.shape.size() - 2, skip = 3 - dims;
  const int64_t N = x.shape[0], C = x.shape[1], G = a.groups ? a.groups : 1, og = w.shape[1], O = og * G;
  const int64_t cg = C / G;
  std::array<RefAxis, 3> ax;
  for (size_t i = 0; i < dims; ++i) {
    RefAxis& r = ax[skip + i];
    r.in = x.shape[2 + i];
    r.kernel = w.shape[2 + i];
    r.stride = a.strides.empty() ? 1 : static_cast<int64_t>(a.strides[i]);
    r.dilation = a.dilations.empty() ? 1 : static_cast<int64_t>(a.dilations[i]);
    const int64_t full = (r.in - 1) * r.stride + (r.kernel - 1) * r.dilation + 1;
    if (a.pad_type == "custom") {
      r.pad = static_cast<int64_t>(a.pad[2 * i]);
      r.out = full - r.pad - static_cast<int64_t>(a.pad[2 * i + 1]);
    } else {
      r.out = a.pad_type == "same" ? r.in * r.stride : full;
    }
    if (!output_shape.empty()) r.out = static_cast<int64_t>(output_shape[2 + i]);
    if (a.pad_type == "same") r.pad = std::max<int64_t>(0, full - r.out) / 2;
  }
  Shape out_shape = {N, O};
  for (size_t i = skip; i < 3; ++i) out_shape.push_back(ax[i].out);
  Array y{x.dtype, out_shape, std::vector<double>(static_cast<size_t>(shape_numel(out_shape)))};
  const int64_t P = ax[0].out * ax[1].out * ax[2].out;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o) {
      double* yo = y.v.data() + (n * O + o) * P;
      if (in.has("bias")) std::fill(yo, yo + P, in["bias"].v[o]);
      for (int64_t c = 0; c < cg; ++c) {
        const int64_t ci = (o / og) * cg + c;
        for (int64_t id = 0; id < ax[0].in; ++id)
          for (int64_t ih = 0; ih < ax[1].in; ++ih)
            for (int64_t iw = 0; iw < ax[2].in; ++iw)
              for (int64_t kd = 0; kd < ax[0].kernel; ++kd)
                for (int64_t kh = 0; kh < ax[1].kernel; ++kh)
                  for (int64_t kw = 0; kw < ax[2].kernel; ++kw) {
                    const int64_t od = id * ax[0].stride + kd * ax[0].dilation - ax[0].pad;
                    const int64_t oh = ih * ax[1].stride + kh * ax[1].dilation - ax[1].pad;
                    const int64_t ow = iw * ax[2].stride + kw * ax[2].dilation - ax[2].pad;
                    if (od < 0 || od >= ax[0].out || oh < 0 || oh >= ax[1].out || ow < 0 || ow >= ax[2].out) continue;
                    yo[(od * ax[1].out + oh) * ax[2].out + ow] +=
                        x.v[(((n * C + ci) * ax[0].in + id) * ax[1].in + ih) * ax[2].in + iw] *
                        w.v[(((ci * og + o % og) * ax[0].kernel + kd) * ax[1].kernel + kh) * ax[2].kernel + kw];
                  }
      }
    }
  return y;
}

Entry conv_transpose(const std::string& what, Shape x, Shape w, ConvArgs a, bool bias, uint32_t seed,
                     std::vector<double> output_shape = {}) {
  const int64_t c_out = w[1] * (a.groups ? a.groups : 1);
  Entry e =
      op("conv_transpose", what).in("x", values(std::move(x), seed)).konst("weight", values(std::move(w), seed + 1));
  if (bias) e.konst("bias", values({c_out}, seed + 2));
  if (!output_shape.empty()) e.ints("output_shape", output_shape);
  with_args(e, a);
  return e
      .reference([a, output_shape](const Inputs& in) {
        return std::vector<Array>{conv_transpose_reference(in, a, output_shape)};
      })
      .tol32(1e-5, 1e-5)
      .tol16(1e-3, 2e-3);
}

std::vector<Entry> conv_transposes() {
  return {
      conv_transpose("1D valid, stride 2, bias", {2, 3, 5}, {3, 2, 3}, {{2}, {}, {}, "valid", 0}, true, 60),
      conv_transpose("2D custom pad [1, 1, 0, 1], strides [2, 3], dilations [1, 2], groups 2", {1, 4, 4, 5},
                     {4, 3, 2, 3}, {{2, 3}, {1, 2}, {1, 1, 0, 1}, "custom", 2}, true, 63),
      conv_transpose("2D same, stride 2, even kernel: the odd crop element after", {1, 2, 3, 4}, {2, 3, 4, 3},
                     {{2, 2}, {}, {}, "same", 0}, false, 66),
      conv_transpose("2D same with a kernel shorter than the stride: zeros at the end", {1, 2, 3, 3}, {2, 2, 1, 2},
                     {{3, 3}, {}, {}, "same", 0}, true, 69),
      conv_transpose("valid with an output_shape one longer than the result", {1, 2, 4}, {2, 3, 3},
                     {{2}, {}, {}, "valid", 0}, false, 72, {1, 3, 10}),
      conv_transpose("same with an output_shape shorter than in * stride", {1, 2, 4, 3}, {2, 2, 3, 3},
                     {{2, 2}, {}, {}, "same", 0}, false, 75, {1, 2, 7, 5}),
      conv_transpose("custom pad with its own output_shape (as the torch frontend writes it)", {1, 2, 5}, {2, 2, 4},
                     {{2}, {}, {1, 2}, "custom", 0}, true, 78, {1, 2, 9}),
      conv_transpose("3D custom pad, strides [1, 2, 1], groups 2", {1, 2, 3, 4, 3}, {2, 2, 2, 2, 3},
                     {{1, 2, 1}, {}, {0, 1, 1, 0, 0, 0}, "custom", 2}, true, 81),
      conv_transpose("depthwise (groups = C), same, stride 2", {1, 3, 6, 5}, {3, 1, 3, 3}, {{2, 2}, {}, {}, "same", 3},
                     true, 84),
      conv_transpose("16 -> 8 channels, 4x4 stride 2 on 12 x 12: split over the thread pool", {1, 16, 12, 12},
                     {16, 8, 4, 4}, {{2, 2}, {}, {1, 1, 1, 1}, "custom", 0}, true, 87),
  };
}

[[maybe_unused]] const bool registered = add_entries(convs()) && add_entries(conv_transposes());

}  // namespace
}  // namespace staticllm::test::optable

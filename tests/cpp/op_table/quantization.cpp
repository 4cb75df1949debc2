// Op-table entries of runtime/mil/ops/quantization.cpp (the constexpr_*
// decompression ops) on small quantized weights: 4-bit values as the weight
// store unpacks them (int8 / uint8), per-block and per-channel scales and
// offsets, a 2-bit palette per row group.
#include <algorithm>
#include <cmath>

#include "op_table.h"

namespace staticllm::test::optable {
namespace {

// out[i, j] = (data[i, j] - offset[block]) * scale[block], blocks of `rows` x `cols`
// (offset empty: 0).
std::vector<Array> shift_scale(const Inputs& in, int64_t rows, int64_t cols) {
  const Array &data = in["data"], &scale = in["scale"];
  int64_t R = data.shape[0], C = data.shape[1], sc = C / cols;
  Array out{scale.dtype, data.shape, {}};
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < C; ++j) {
      int64_t b = (i / rows) * sc + j / cols;
      double off = in.has("offset") ? in["offset"].v[b] : 0;
      out.v.push_back((data.v[i * C + j] - off) * scale.v[b]);
    }
  return {out};
}

std::vector<Entry> blockwise() {
  Spec int4 = Typed(DType::kInt8, {2, 4}, {-8, -3, 0, 7, 5, -1, 2, -6});
  return {
      op("constexpr_blockwise_shift_scale", "int4 data, int8 offset, blocks of 1 x 2")
          .konst("data", int4)
          .konst("scale", F({2, 2}, {0.5, -0.25, 1.5, 0.125}))
          .konst("offset", Typed(DType::kInt8, {2, 2}, {1, -2, 0, 3}))
          .reference([](const Inputs& in) { return shift_scale(in, 1, 2); }),
      op("constexpr_blockwise_shift_scale", "uint4 data, no offset, blocks of 4 x 1")
          .konst("data", Typed(DType::kUInt8, {4, 2}, {0, 15, 3, 8, 12, 1, 7, 9}))
          .konst("scale", F({1, 2}, {0.01, 2}))
          .reference([](const Inputs& in) { return shift_scale(in, 4, 1); }),
      op("constexpr_blockwise_shift_scale", "float offset, one block")
          .konst("data", int4)
          .konst("scale", F({1, 1}, {0.75}))
          .konst("offset", F({1, 1}, {0.5}))
          .reference([](const Inputs& in) { return shift_scale(in, 2, 4); }),
  };
}

std::vector<Entry> palettes() {
  // indices [4, 2] in 2 row groups of 2, each with its own 4-entry palette
  return {
      op("constexpr_lut_to_dense", "2-bit indices, a palette per 2 rows")
          .konst("indices", Typed(DType::kUInt8, {4, 2}, {0, 3, 1, 2, 3, 3, 2, 0}))
          .konst("lut", F({2, 1, 4, 1}, {-1, -0.5, 0.5, 1, 10, 20, 30, 40}))
          .expect({F({4, 2}, {-1, 1, -0.5, 0.5, 40, 40, 30, 10})}),
      // vector palettization: indices [2, 2, 2] pick vectors (1, 2, 3) or (10, 20, 30)
      op("constexpr_lut_to_dense", "vectors of 3 along axis 1")
          .konst("indices", Typed(DType::kUInt8, {2, 2, 2}, {0, 0, 1, 0, 1, 1, 0, 0}))
          .konst("lut", F({1, 1, 1, 2, 3}, {1, 2, 3, 10, 20, 30}))
          .scalar_int("vector_axis", 1)
          .expect({F({2, 6, 2}, {1, 1, 2, 2, 3, 3, 10, 1, 20, 2, 30, 3, 10, 10, 20, 20, 30, 30, 1, 1, 2, 2, 3, 3})}),
      op("constexpr_lut_to_dense", "vectors of 3 along the last axis")
          .konst("indices", Typed(DType::kUInt8, {2, 2, 2}, {0, 0, 1, 0, 1, 1, 0, 0}))
          .konst("lut", F({1, 1, 1, 2, 3}, {1, 2, 3, 10, 20, 30}))
          .scalar_int("vector_axis", -1)
          .expect({F({2, 2, 6}, {1, 2, 3, 1, 2, 3, 10, 20, 30, 1, 2, 3, 10, 20, 30, 10, 20, 30, 1, 2, 3, 1, 2, 3})}),
      // iOS16: 2-bit indices (0, 3, 2, 1, 3) packed least significant bits first
      op("constexpr_lut_to_dense", "iOS16 form: packed bytes, one palette, a shape")
          .konst("indices", Typed(DType::kUInt8, {2}, {0x6C, 0x03}))
          .konst("lut", F({4}, {1, 2, 3, 4}))
          .ints("shape", {5})
          .expect({F({5}, {1, 4, 3, 2, 4})}),
      op("constexpr_cast", "fp16 to fp32")
          .konst("source_val", Typed(DType::kFloat16, {3}, {0.5, -2, 1000}))
          .string("output_dtype", "fp32")
          .expect({Typed(DType::kFloat32, {3}, {0.5, -2, 1000})}),
  };
}

// out = (q - zero_point) * scale, zero_point and scale scalar or per index of `axis`.
std::vector<Array> affine(const Inputs& in, int64_t axis) {
  const Array &q = in["quantized_data"], &s = in["scale"], &z = in["zero_point"];
  int64_t C = q.shape[1];
  Array out{s.dtype, q.shape, {}};
  for (int64_t i = 0; i < q.numel(); ++i) {
    int64_t k = axis == 0 ? i / C : i % C;
    out.v.push_back((q.v[i] - z.v[z.v.size() == 1 ? 0 : k]) * s.v[s.v.size() == 1 ? 0 : k]);
  }
  return {out};
}

std::vector<Entry> affines() {
  return {
      op("constexpr_affine_dequantize", "int8, per row (axis 0)")
          .konst("quantized_data", Typed(DType::kInt8, {3, 4}, {-128, -1, 0, 127, 5, 6, -7, 8, 1, 2, 3, 4}))
          .konst("zero_point", Typed(DType::kInt8, {3}, {0, 3, -2}))
          .konst("scale", F({3}, {0.01, 0.5, 2}))
          .scalar_int("axis", 0)
          .reference([](const Inputs& in) { return affine(in, 0); }),
      op("constexpr_affine_dequantize", "uint8, per column (axis -1), scalar zero point")
          .konst("quantized_data", Typed(DType::kUInt8, {2, 3}, {0, 128, 255, 7, 100, 9}))
          .konst("zero_point", Typed(DType::kUInt8, {}, {128}))
          .konst("scale", F({3}, {0.25, -0.125, 0.0078125}))
          .scalar_int("axis", -1)
          .reference([](const Inputs& in) { return affine(in, 1); }),
  };
}

// clip(round_half_even(x / scale) + zero_point) into [lo, hi]
Array quantized(const Inputs& in, DType out, double lo, double hi, int64_t per_row) {
  const Array &x = in["input"], &s = in["scale"];
  Array q{out, x.shape, {}};
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t k = s.v.size() == 1 ? 0 : i / per_row;
    double z = in.has("zero_point") ? in["zero_point"].v[s.v.size() == 1 ? 0 : k] : 0;
    q.v.push_back(std::min(std::max(std::nearbyint(x.v[i] / s.v[k]) + z, lo), hi));
  }
  return q;
}

std::vector<Entry> activation_quantization() {
  return {
      op("quantize", "int8 per tensor, ties to even, clipped")
          .in("input", F({6}, {-300, -2.5, -0.5, 0.5, 1.5, 300}))
          .konst("scale", F({}, {1}))
          .konst("zero_point", Typed(DType::kInt8, {}, {3}))
          .string("output_dtype", "int8")
          .reference([](const Inputs& in) { return std::vector<Array>{quantized(in, DType::kInt8, -128, 127, 1)}; }),
      op("quantize", "uint8 per row (axis 0), no zero point")
          .in("input", F({2, 3}, {0.1, 2, 9, -1, 4, 100}))
          .konst("scale", F({2}, {0.25, 0.5}))
          .scalar_int("axis", 0)
          .string("output_dtype", "uint8")
          .reference([](const Inputs& in) { return std::vector<Array>{quantized(in, DType::kUInt8, 0, 255, 3)}; }),
      op("dequantize", "uint8 per column (axis 1)")
          .in("input", Typed(DType::kUInt8, {2, 2}, {0, 255, 128, 7}))
          .konst("scale", F({2}, {0.5, -0.25}))
          .konst("zero_point", Typed(DType::kUInt8, {2}, {128, 7}))
          .scalar_int("axis", 1)
          .expect({F({2, 2}, {-64, -62, 0, 0})}),
      op("dequantize", "int8 per tensor, no zero point")
          .in("input", Typed(DType::kInt8, {3}, {-128, 0, 127}))
          .konst("scale", F({}, {0.5}))
          .expect({F({3}, {-64, 0, 63.5})}),
  };
}

[[maybe_unused]] const bool registered = add_entries(blockwise()) && add_entries(palettes()) &&
                                         add_entries(affines()) && add_entries(activation_quantization());

}  // namespace
}  // namespace staticllm::test::optable

// Op-table entries of runtime/mil/ops/image.cpp: the grids of each sampling
// mode on a 1 x 2 ramp (the values MIL's documentation lists), nearest
// neighbours, crops, and grid sampling with each padding and coordinate
// mode (coremltools' resample and affine examples).
#include "op_table.h"

namespace staticllm::test::optable {
namespace {

Spec ramp() { return F({1, 1, 2}, {0, 1}); }  // values equal their positions: outputs show the grid

Entry resize_bilinear(const std::string& mode, int64_t n, std::vector<double> grid) {
  return op("resize_bilinear", mode + ", 2 -> " + std::to_string(n))
      .in("x", ramp())
      .scalar_int("target_size_height", 1)
      .scalar_int("target_size_width", n)
      .string("sampling_mode", mode)
      .expect({F({1, 1, n}, std::move(grid))})
      .tol16(2e-3, 2e-3);
}

Spec image22() { return F({1, 1, 2, 2}, {11, 22, 33, 44}); }

Entry resample(const std::string& what, const std::string& sampling, const std::string& padding,
               const std::string& coords, bool align, std::vector<double> expected) {
  return op("resample", what)
      .in("x", image22())
      .in("coordinates", F({1, 2, 2, 2}, {-1, -2, -3.7, -1, 0, 0, 3.5, 1.2}))
      .string("sampling_mode", sampling)
      .string("padding_mode", padding)
      .scalar("padding_value", padding == "constant" ? 6.17 : -1)
      .string("coordinates_mode", coords)
      .flag("align_corners", align)
      .expect({F({1, 1, 2, 2}, std::move(expected))})
      .tol16(1e-2, 5e-2);
}

std::vector<Entry> image_entries() {
  Spec x1d = F({1, 1, 1, 3}, {1.5, -2.5, 3.5});
  Spec x44 = F({1, 1, 4, 4}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16});
  return {
      resize_bilinear("STRICT_ALIGN_CORNERS", 5, {0, 0.25, 0.5, 0.75, 1}),
      resize_bilinear("ALIGN_CORNERS", 1, {0.5}),
      resize_bilinear("DEFAULT", 5, {0, 0.4, 0.8, 1, 1}),
      resize_bilinear("OFFSET_CORNERS", 5, {0.1, 0.3, 0.5, 0.7, 0.9}),
      resize_bilinear("UNALIGN_CORNERS", 6, {0, 0, 1.0 / 3, 2.0 / 3, 1, 1}),
      op("upsample_bilinear", "align_corners, scale 3")
          .in("x", ramp())
          .scalar_int("scale_factor_width", 3)
          .flag("align_corners", true)
          .expect({F({1, 1, 6}, {0, 0.2, 0.4, 0.6, 0.8, 1})})
          .tol16(2e-3, 2e-3),
      op("upsample_bilinear", "half-pixel centers, scale 2.5 (floor(5))")
          .in("x", ramp())
          .scalar("scale_factor_width", 2.5)
          .flag("align_corners", false)
          .expect({F({1, 1, 5}, {0, 0.1, 0.5, 0.9, 1})})
          .tol16(2e-3, 2e-3),
      op("upsample_bilinear", "neither: i * in / out")
          .in("x", ramp())
          .scalar_int("scale_factor_width", 3)
          .flag("align_corners", false)
          .flag("half_pixel_centers", false)
          .expect({F({1, 1, 6}, {0, 1.0 / 3, 2.0 / 3, 1, 1, 1})})
          .tol16(2e-3, 2e-3),
      op("upsample_nearest_neighbor", "fractional scales 3.17 x 0.67")
          .in("x", x1d)
          .scalar("scale_factor_height", 3.17)
          .scalar("scale_factor_width", 0.67)
          .expect({F({1, 1, 3, 2}, {1.5, -2.5, 1.5, -2.5, 1.5, -2.5})}),
      op("resize_nearest_neighbor", "1 x 3 -> 2 x 5")
          .in("x", x1d)
          .scalar_int("target_size_height", 2)
          .scalar_int("target_size_width", 5)
          .expect({F({1, 1, 2, 5}, {1.5, 1.5, -2.5, -2.5, 3.5, 1.5, 1.5, -2.5, -2.5, 3.5})}),
      op("resize", "iOS17, nearest, rounds the DEFAULT grid")
          .in("x", F({1, 1, 2, 1}, {-6, 9}))
          .ints("shape", {1, 1, 3, 2})
          .konst("resized_dims", Typed(DType::kInt32, {}, {2}))
          .string("interpolation_mode", "NEAREST_NEIGHBOR")
          .expect({F({1, 1, 3, 2}, {-6, -6, 9, 9, 9, 9})}),
      op("resize", "iOS17, linear over the last axis, 0 keeps a size")
          .in("x", ramp())
          .ints("shape", {0, 5})
          .konst("resized_dims", Typed(DType::kInt32, {}, {1}))
          .expect({F({1, 1, 5}, {0, 0.4, 0.8, 1, 1})})
          .tol16(2e-3, 2e-3),
      op("crop", "rows (1, 0), columns (1, 2)")
          .in("x", x44)
          .ints("crop_height", {1, 0})
          .ints("crop_width", {1, 2})
          .expect({F({1, 1, 3, 1}, {6, 10, 14})}),
      op("crop_resize", "roi with image index, ALIGN_CORNERS, normalized")
          .in("x", x44)
          .konst("roi", F({3, 1, 5, 1, 1}, {0, 0.1, 0.3, 1.3, 1, 0, 0.5, 1.8, 1.0, 0.3, 0, 0.0, 0.4, 0.6, 0.7}))
          .scalar_int("target_height", 2)
          .scalar_int("target_width", 2)
          .flag("normalized_coordinates", true)
          .string("sampling_mode", "ALIGN_CORNERS")
          .scalar("pad_value", 10)
          .expect({F({3, 1, 1, 2, 2}, {3.1, 5.2, 10, 10, 10, 7.9, 10, 13.9, 2.2, 3.1, 9.4, 10.3})})
          .tol16(1e-2, 2e-2),
      op("crop_resize", "iOS17 boxes, one target point (the box center)")
          .in("x", x44)
          .in("boxes", F({1, 4}, {1, 1, 2, 2}))
          .in("box_indices", I32({1}, {0}))
          .string("sampling_mode", "ALIGN_CORNERS")
          .expect({F({1, 1, 1, 1}, {8.5})}),
      resample("bilinear, constant padding, [-1, 1], corners aligned", "bilinear", "constant",
               "normalized_minus_one_to_one", true, {8.585, 6.17, 27.5, 6.17}),
      resample("nearest, border, unnormalized", "nearest", "border", "unnormalized", false, {11, 11, 11, 44}),
      resample("bilinear, reflection, [0, 1]", "bilinear", "reflection", "normalized_zero_to_one", true,
               {22, 36.3, 11, 34.1}),
      resample("nearest, symmetric, [0, 1], edges aligned", "nearest", "symmetric", "normalized_zero_to_one", false,
               {22, 33, 11, 33}),
      op("affine", "coremltools' example, 3 x 3 output")
          .in("x", image22())
          .in("transform_matrix", F({1, 6}, {-1, -2, -3.7, -1, 3.5, 1.2}))
          .scalar_int("output_height", 3)
          .scalar_int("output_width", 3)
          .string("sampling_mode", "bilinear")
          .string("padding_mode", "constant")
          .scalar("padding_value", 0)
          .string("coordinates_mode", "normalized_minus_one_to_one")
          .flag("align_corners", true)
          .expect({F({1, 1, 3, 3}, {10.7525, 2.5025, 0, 1.98, 0, 0, 0, 0, 0})})
          .tol16(1e-2, 5e-2),
  };
}

[[maybe_unused]] const bool registered = add_entries(image_entries());

}  // namespace
}  // namespace staticllm::test::optable

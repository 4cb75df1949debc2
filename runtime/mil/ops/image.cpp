// Image resizing and sampling over the last two axes: upsample_* and
// resize_* (nearest and bilinear), iOS17 resize, crop, crop_resize (iOS15/16
// roi, iOS17 boxes + box_indices), resample and affine (grid sampling with
// constant / border / reflection / symmetric padding). Values are read as
// fp32; interpolation weights are double.
#include <cmath>
#include <cstring>

#include "mil/ops/elementwise_util.h"
#include "mil/ops/indices.h"
#include "mil/ops/strided_copy.h"

namespace staticllm::mil {

namespace {

// ---- grids --------------------------------------------------------------

enum class Sampling { kStrictAlign, kAlign, kDefault, kOffset, kUnalign };

Sampling read_sampling(const OpPlanContext& ctx, const char* param, const std::string& fallback) {
  std::string m = ctx.has(param) ? ctx.const_string(param) : fallback;
  if (m == "STRICT_ALIGN_CORNERS") return Sampling::kStrictAlign;
  if (m == "ALIGN_CORNERS") return Sampling::kAlign;
  if (m == "DEFAULT") return Sampling::kDefault;
  if (m == "OFFSET_CORNERS") return Sampling::kOffset;
  if (m == "UNALIGN_CORNERS") return Sampling::kUnalign;
  ctx.fail("unknown sampling_mode '" + m + "'");
  return Sampling::kDefault;  // not reached
}

// Where output point i of n samples the interval [0, x - 1] (the grid
// definitions of MIL's resize_bilinear), before clamping.
double grid_point(Sampling mode, int64_t x, int64_t n, int64_t i) {
  const double X = static_cast<double>(x), N = static_cast<double>(n), I = static_cast<double>(i);
  switch (mode) {
    case Sampling::kStrictAlign: return n > 1 ? I * (X - 1) / (N - 1) : 0.0;
    case Sampling::kAlign: return n > 1 ? I * (X - 1) / (N - 1) : (X - 1) / 2;
    case Sampling::kDefault: return I * X / N;
    case Sampling::kOffset: {
      const double delta = std::max(1.0, X - 1) / N;
      return 0.5 * delta + I * delta;
    }
    case Sampling::kUnalign: return (I + 0.5) * X / N - 0.5;
  }
  return 0.0;
}

// Linear interpolation between two neighbours along one axis.
struct Tap {
  int64_t lo = 0, hi = 0;
  float w = 0;  // weight of hi
};

Tap linear_tap(double p, int64_t x) {
  p = std::min(std::max(p, 0.0), static_cast<double>(x - 1));
  Tap t;
  t.lo = static_cast<int64_t>(std::floor(p));
  t.hi = std::min(t.lo + 1, x - 1);
  t.w = static_cast<float>(p - static_cast<double>(t.lo));
  return t;
}

std::vector<Tap> linear_taps(Sampling mode, int64_t x, int64_t n) {
  std::vector<Tap> taps;
  for (int64_t i = 0; i < n; ++i) taps.push_back(linear_tap(grid_point(mode, x, n, i), x));
  return taps;
}

// floor(i * x / n): nearest neighbour without half-pixel centers.
std::vector<Tap> floor_taps(int64_t x, int64_t n) {
  std::vector<Tap> taps;
  for (int64_t i = 0; i < n; ++i) {
    int64_t s = std::min<int64_t>(x - 1, static_cast<int64_t>(std::floor(static_cast<double>(i) * x / n)));
    taps.push_back({s, s, 0});
  }
  return taps;
}

// The grid point rounded to the nearest pixel (iOS17 resize, NEAREST_NEIGHBOR).
std::vector<Tap> nearest_taps(Sampling mode, int64_t x, int64_t n) {
  std::vector<Tap> taps;
  for (int64_t i = 0; i < n; ++i) {
    double p = std::min(std::max(grid_point(mode, x, n, i), 0.0), static_cast<double>(x - 1));
    int64_t s = static_cast<int64_t>(std::floor(p + 0.5));
    taps.push_back({s, s, 0});
  }
  return taps;
}

// out[.., i, j] = separable interpolation of x[.., H, W] with taps per axis.
PlannedOp plan_resample2d(OpPlanContext& ctx, const ValueType& xt, std::vector<Tap> rows, std::vector<Tap> cols) {
  const size_t rank = xt.shape.size();
  if (rank < 2) ctx.fail("x needs rank >= 2");
  const int64_t H = xt.shape[rank - 2], W = xt.shape[rank - 1];
  if ((H == 0 && !rows.empty()) || (W == 0 && !cols.empty())) ctx.fail("cannot resample an empty axis");
  const int64_t planes = shape_numel(xt.shape) / std::max<int64_t>(1, H * W);
  const int64_t oh = static_cast<int64_t>(rows.size()), ow = static_cast<int64_t>(cols.size());
  Shape out = xt.shape;
  out[rank - 2] = oh;
  out[rank - 1] = ow;
  int xs = ctx.input("x");
  PlannedOp op;
  op.outputs.push_back({xt.dtype, out});
  op.scratch_bytes = static_cast<size_t>(shape_numel(xt.shape) + shape_numel(out)) * sizeof(float);
  op.run = [=](const KernelCall& call) {
    auto* buf = static_cast<float*>(call.scratch);
    const float* x = floats_of(call.in(xs), buf);
    float* y = buf + shape_numel(xt.shape);
    for (int64_t p = 0; p < planes; ++p) {
      const float* src = x + p * H * W;
      float* dst = y + p * oh * ow;
      for (int64_t i = 0; i < oh; ++i) {
        const Tap& r = rows[i];
        for (int64_t j = 0; j < ow; ++j) {
          const Tap& c = cols[j];
          float top = src[r.lo * W + c.lo] + c.w * (src[r.lo * W + c.hi] - src[r.lo * W + c.lo]);
          float bottom = src[r.hi * W + c.lo] + c.w * (src[r.hi * W + c.hi] - src[r.hi * W + c.lo]);
          dst[i * ow + j] = top + r.w * (bottom - top);
        }
      }
    }
    store_floats(call.out(0), y);
  };
  return op;
}

const ValueType& spatial_input(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  if (xt.shape.size() < 3) ctx.fail("x needs rank >= 3");
  if (!is_float_dtype(xt.dtype)) ctx.fail("x must be fp16 or fp32");
  return xt;
}

// floor(x * scale), the size coremltools infers.
int64_t scaled_size(const OpPlanContext& ctx, int64_t x, const char* param) {
  double s = ctx.has(param) ? ctx.const_float(param) : 1.0;
  double v = std::floor(static_cast<double>(x) * s);
  if (!(v >= 1 && v < 1e9)) ctx.fail(std::string(param) + " gives an output size out of range");
  return static_cast<int64_t>(v);
}

int64_t target_size(const OpPlanContext& ctx, const char* param) {
  int64_t v = ctx.const_int_or(param, 1);
  if (v < 1 || v > (int64_t{1} << 30)) ctx.fail(std::string(param) + " must be positive");
  return v;
}

PlannedOp build_upsample_nearest(OpPlanContext& ctx) {
  const ValueType& xt = spatial_input(ctx);
  const size_t r = xt.shape.size();
  const int64_t H = xt.shape[r - 2], W = xt.shape[r - 1];
  return plan_resample2d(ctx, xt, floor_taps(H, scaled_size(ctx, H, "scale_factor_height")),
                         floor_taps(W, scaled_size(ctx, W, "scale_factor_width")));
}

PlannedOp build_resize_nearest(OpPlanContext& ctx) {
  const ValueType& xt = spatial_input(ctx);
  const size_t r = xt.shape.size();
  return plan_resample2d(ctx, xt, floor_taps(xt.shape[r - 2], target_size(ctx, "target_size_height")),
                         floor_taps(xt.shape[r - 1], target_size(ctx, "target_size_width")));
}

// align_corners: the corner pixels' centers line up; else half-pixel
// centers (iOS16 half_pixel_centers, default !align_corners) or plain
// i * in / out.
PlannedOp build_upsample_bilinear(OpPlanContext& ctx) {
  const ValueType& xt = spatial_input(ctx);
  const size_t r = xt.shape.size();
  const bool align = ctx.const_bool_or("align_corners", true);
  const bool half = ctx.const_bool_or("half_pixel_centers", !align);
  if (align && half) ctx.fail("align_corners and half_pixel_centers cannot both be set");
  Sampling mode = align ? Sampling::kStrictAlign : half ? Sampling::kUnalign : Sampling::kDefault;
  const int64_t H = xt.shape[r - 2], W = xt.shape[r - 1];
  return plan_resample2d(ctx, xt, linear_taps(mode, H, scaled_size(ctx, H, "scale_factor_height")),
                         linear_taps(mode, W, scaled_size(ctx, W, "scale_factor_width")));
}

PlannedOp build_resize_bilinear(OpPlanContext& ctx) {
  const ValueType& xt = spatial_input(ctx);
  const size_t r = xt.shape.size();
  Sampling mode = read_sampling(ctx, "sampling_mode", "DEFAULT");
  return plan_resample2d(ctx, xt, linear_taps(mode, xt.shape[r - 2], target_size(ctx, "target_size_height")),
                         linear_taps(mode, xt.shape[r - 1], target_size(ctx, "target_size_width")));
}

// iOS17: the last resized_dims (1 or 2) axes take sizes from `shape` (0: keep).
PlannedOp build_resize(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  if (!is_float_dtype(xt.dtype)) ctx.fail("x must be fp16 or fp32");
  if (ctx.constant("shape") == nullptr) ctx.fail_run_time("a shape known only at run time is not supported");
  std::vector<int64_t> shape = ctx.const_ints("shape");
  const int64_t k = ctx.const_int("resized_dims"), rank = static_cast<int64_t>(xt.shape.size());
  if (k < 1 || k > 2 || k > static_cast<int64_t>(shape.size()) || static_cast<int64_t>(shape.size()) > rank) {
    ctx.fail("resized_dims " + std::to_string(k) + " is not supported for shape of " + std::to_string(shape.size()) +
             " values and x of rank " + std::to_string(rank) + " (1 or 2 resized axes)");
  }
  std::string interp = ctx.has("interpolation_mode") ? ctx.const_string("interpolation_mode") : "LINEAR";
  if (interp != "LINEAR" && interp != "NEAREST_NEIGHBOR") ctx.fail("unknown interpolation_mode '" + interp + "'");
  Sampling mode = read_sampling(ctx, "sampling_mode", "DEFAULT");
  auto size = [&](int64_t from_end) {  // new size of axis rank - from_end
    int64_t v = shape[shape.size() - from_end];
    if (v < 0 || v > (int64_t{1} << 30)) ctx.fail("resize size out of range");
    return v == 0 ? xt.shape[rank - from_end] : v;
  };
  auto taps = [&](int64_t x, int64_t n) {
    return interp == "LINEAR" ? linear_taps(mode, x, n) : nearest_taps(mode, x, n);
  };
  const int64_t W = xt.shape[rank - 1], H = rank >= 2 ? xt.shape[rank - 2] : 1;
  if (rank < 2) ctx.fail("x needs rank >= 2");
  std::vector<Tap> rows = k == 2 ? taps(H, size(2)) : floor_taps(H, H);
  return plan_resample2d(ctx, xt, rows, taps(W, size(1)));
}

// crop_height / crop_width: amounts removed before and after the last two axes.
PlannedOp build_crop(OpPlanContext& ctx) {
  const ValueType& xt = spatial_input(ctx);
  std::vector<int64_t> ch = ctx.const_ints("crop_height"), cw = ctx.const_ints("crop_width");
  if (ch.size() != 2 || cw.size() != 2) ctx.fail("crop_height and crop_width need 2 values each");
  const size_t r = xt.shape.size();
  StridedCopy copy;
  copy.out_shape = xt.shape;
  copy.src_strides = contiguous_strides(xt.shape);
  const int64_t crops[2][2] = {{ch[0], ch[1]}, {cw[0], cw[1]}};
  for (int a = 0; a < 2; ++a) {
    const int64_t d = static_cast<int64_t>(r) - 2 + a, n = xt.shape[d];
    if (crops[a][0] < 0 || crops[a][1] < 0 || crops[a][0] > n || crops[a][1] > n - crops[a][0]) {
      ctx.fail("crop (" + std::to_string(crops[a][0]) + ", " + std::to_string(crops[a][1]) +
               ") out of range for an axis of " + std::to_string(n));
    }
    copy.out_shape[d] = n - crops[a][0] - crops[a][1];
    copy.src_offset += crops[a][0] * copy.src_strides[d];
  }
  return strided_op(ctx, xt, copy);
}

// ---- crop_resize ----------------------------------------------------------

enum class BoxMode { kCornersHeightFirst, kCornersWidthFirst, kCenterSizeHeightFirst, kCenterSizeWidthFirst };

struct CropResizePlan {
  int64_t B = 0, C = 0, H = 0, W = 0, th = 1, tw = 1, boxes = 0;
  bool normalized = false, roi_has_index = false, ios17 = false, has_indices = false;
  // iOS16 brought pad_value for points outside the input; what Core ML gives
  // there before it is not specified (coremltools' iOS15 test expects values
  // no padding or clamping rule yields), so such a point is an error then.
  bool pad_outside = true;
  double spatial_scale = 1, pad_value = 0;
  BoxMode box_mode = BoxMode::kCornersHeightFirst;
  Sampling sampling = Sampling::kDefault;
  std::string where;
};

// Sample positions along one axis of a box from `start` to `end` (pixels).
double box_point(Sampling mode, double start, double end, int64_t n, int64_t i) {
  const double N = static_cast<double>(n), I = static_cast<double>(i);
  switch (mode) {
    case Sampling::kStrictAlign: return n > 1 ? start + I * (end - start) / (N - 1) : start;
    case Sampling::kAlign: return n > 1 ? start + I * (end - start) / (N - 1) : (start + end) / 2;
    case Sampling::kDefault: return start + I * (end - start) / N;
    case Sampling::kOffset: return start + (I + 0.5) * (end - start) / N;
    case Sampling::kUnalign: return start + (I + 0.5) * (end - start) / N - 0.5;
  }
  return start;
}

// One crop: image `img` (C planes of H x W floats) sampled bilinearly at the
// box's grid; points outside [0, H-1] x [0, W-1] take pad_value.
void crop_one(const CropResizePlan& p, const float* img, const double box[4], float* out) {
  double h0, w0, h1, w1;
  switch (p.box_mode) {
    case BoxMode::kCornersHeightFirst: h0 = box[0], w0 = box[1], h1 = box[2], w1 = box[3]; break;
    case BoxMode::kCornersWidthFirst: w0 = box[0], h0 = box[1], w1 = box[2], h1 = box[3]; break;
    case BoxMode::kCenterSizeHeightFirst:
      h0 = box[0] - box[2] / 2, w0 = box[1] - box[3] / 2, h1 = box[0] + box[2] / 2, w1 = box[1] + box[3] / 2;
      break;
    default: w0 = box[0] - box[2] / 2, h0 = box[1] - box[3] / 2, w1 = box[0] + box[2] / 2, h1 = box[1] + box[3] / 2;
  }
  const double sh = (p.normalized ? static_cast<double>(p.H - 1) : 1.0) * p.spatial_scale;
  const double sw = (p.normalized ? static_cast<double>(p.W - 1) : 1.0) * p.spatial_scale;
  for (int64_t i = 0; i < p.th; ++i) {
    const double y = box_point(p.sampling, h0 * sh, h1 * sh, p.th, i);
    for (int64_t j = 0; j < p.tw; ++j) {
      const double x = box_point(p.sampling, w0 * sw, w1 * sw, p.tw, j);
      const bool outside =
          !(y >= 0 && y <= static_cast<double>(p.H - 1) && x >= 0 && x <= static_cast<double>(p.W - 1));
      if (outside && !p.pad_outside) {
        throw InputError(p.where + ": sample point (" + std::to_string(y) + ", " + std::to_string(x) +
                         ") of a box lies outside the input, which crop_resize before iOS16 does not define");
      }
      const Tap r = linear_tap(y, p.H), c = linear_tap(x, p.W);
      for (int64_t ch = 0; ch < p.C; ++ch) {
        const float* s = img + ch * p.H * p.W;
        float v = static_cast<float>(p.pad_value);
        if (!outside) {
          float top = s[r.lo * p.W + c.lo] + c.w * (s[r.lo * p.W + c.hi] - s[r.lo * p.W + c.lo]);
          float bottom = s[r.hi * p.W + c.lo] + c.w * (s[r.hi * p.W + c.hi] - s[r.hi * p.W + c.lo]);
          v = top + r.w * (bottom - top);
        }
        out[(ch * p.th + i) * p.tw + j] = v;
      }
    }
  }
}

PlannedOp build_crop_resize(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  if (xt.shape.size() != 4 || !is_float_dtype(xt.dtype)) ctx.fail("x must be a float [B, C, H, W] tensor");
  CropResizePlan p;
  p.B = xt.shape[0], p.C = xt.shape[1], p.H = xt.shape[2], p.W = xt.shape[3];
  if (p.H < 1 || p.W < 1) ctx.fail("x has an empty spatial axis");
  p.th = target_size(ctx, "target_height");
  p.tw = target_size(ctx, "target_width");
  p.normalized = ctx.const_bool_or("normalized_coordinates", false);
  p.spatial_scale = ctx.has("spatial_scale") ? ctx.const_float("spatial_scale") : 1.0;
  p.pad_value = ctx.has("pad_value") ? ctx.const_float("pad_value") : 0.0;
  p.pad_outside = ctx.has("pad_value") || ctx.ios_opset() == 0 || ctx.ios_opset() >= 16;
  p.sampling = read_sampling(ctx, "sampling_mode", "DEFAULT");
  std::string bm = ctx.has("box_coordinate_mode") ? ctx.const_string("box_coordinate_mode") : "CORNERS_HEIGHT_FIRST";
  const std::pair<const char*, BoxMode> modes[] = {{"CORNERS_HEIGHT_FIRST", BoxMode::kCornersHeightFirst},
                                                   {"CORNERS_WIDTH_FIRST", BoxMode::kCornersWidthFirst},
                                                   {"CENTER_SIZE_HEIGHT_FIRST", BoxMode::kCenterSizeHeightFirst},
                                                   {"CENTER_SIZE_WIDTH_FIRST", BoxMode::kCenterSizeWidthFirst}};
  bool known = false;
  for (const auto& [name, mode] : modes) {
    if (bm == name) p.box_mode = mode, known = true;
  }
  if (!known) ctx.fail("unknown box_coordinate_mode '" + bm + "'");
  p.ios17 = ctx.has("boxes");
  const ValueType& rt = ctx.type(p.ios17 ? "boxes" : "roi");
  Shape out;
  if (p.ios17) {  // boxes [N, 4], box_indices [N] (default 0..N-1)
    if (rt.shape.size() != 2 || rt.shape[1] != 4) ctx.fail("boxes must be [N, 4]");
    p.boxes = rt.shape[0];
    p.has_indices = ctx.has("box_indices");
    if (p.has_indices && ctx.type("box_indices").shape != Shape{p.boxes}) ctx.fail("box_indices must be [N]");
    out = {p.boxes, p.C, p.th, p.tw};
  } else {  // roi [N, 1, 4 or 5, 1, 1]; 5: the first value is the image index
    if (rt.shape.size() != 5 || (rt.shape[2] != 4 && rt.shape[2] != 5)) ctx.fail("roi must be [N, 1, 4 or 5, 1, 1]");
    p.boxes = rt.shape[0];
    p.roi_has_index = rt.shape[2] == 5;
    out = {p.boxes, p.roi_has_index ? 1 : p.B, p.C, p.th, p.tw};
  }
  p.where = "op '" + ctx.op_name() + "' (crop_resize)";
  int xs = ctx.input("x"), rs = ctx.input(p.ios17 ? "boxes" : "roi");
  int is = p.has_indices ? ctx.input("box_indices") : -1;
  const int64_t crop = p.C * p.th * p.tw;
  PlannedOp op;
  op.outputs.push_back({xt.dtype, out});
  op.scratch_bytes = static_cast<size_t>(shape_numel(xt.shape) + shape_numel(out)) * sizeof(float);
  op.run = [=](const KernelCall& call) {
    auto* buf = static_cast<float*>(call.scratch);
    const float* x = floats_of(call.in(xs), buf);
    float* y = buf + shape_numel(xt.shape);
    const Tensor& roi = call.in(rs);
    const int64_t per_box = p.ios17 ? 4 : (p.roi_has_index ? 5 : 4);
    const IndexRule rule{p.where, false};
    int64_t k = 0;
    for (int64_t n = 0; n < p.boxes; ++n) {
      double vals[5];
      for (int64_t v = 0; v < per_box; ++v) vals[v] = load_one(roi.dtype(), roi.data(), n * per_box + v);
      const double* box = p.roi_has_index ? vals + 1 : vals;
      if (p.ios17 || p.roi_has_index) {
        int64_t b = n;
        if (p.roi_has_index) {
          if (!(vals[0] >= 0 && vals[0] < static_cast<double>(p.B))) {
            throw InputError(p.where + ": roi image index " + std::to_string(vals[0]) + " out of range");
          }
          b = static_cast<int64_t>(vals[0]);
        } else if (p.has_indices) {
          b = rule(read_index(call.in(is), n), p.B);
        } else {
          b = rule(n, p.B);
        }
        crop_one(p, x + b * p.C * p.H * p.W, box, y + (k++) * crop);
      } else {
        for (int64_t b = 0; b < p.B; ++b) crop_one(p, x + b * p.C * p.H * p.W, box, y + (k++) * crop);
      }
    }
    store_floats(call.out(0), y);
  };
  return op;
}

// ---- resample / affine ----------------------------------------------------

enum class Padding { kConstant, kBorder, kReflection, kSymmetric };
enum class Coords { kUnnormalized, kMinusOneToOne, kZeroToOne };

struct GridSampler {
  bool bilinear = true, align_corners = false;
  Padding padding = Padding::kConstant;
  Coords coords = Coords::kUnnormalized;
  float pad_value = 0;

  // A coordinate in pixels of an axis of `n` from the op's coordinate system.
  double to_pixels(double c, int64_t n) const {
    const double N = static_cast<double>(n);
    switch (coords) {
      case Coords::kUnnormalized: return c;
      case Coords::kMinusOneToOne: return align_corners ? (c + 1) / 2 * (N - 1) : ((c + 1) * N - 1) / 2;
      case Coords::kZeroToOne: return align_corners ? c * (N - 1) : c * N - 0.5;
    }
    return c;
  }

  // Folds a pixel coordinate into the image for the border, reflection
  // (about the edge pixels' centers) and symmetric (about their outer edges) modes.
  double fold(double p, int64_t n) const {
    const double hi = static_cast<double>(n - 1);
    if (padding == Padding::kBorder) return std::min(std::max(p, 0.0), hi);
    if (padding == Padding::kReflection || padding == Padding::kSymmetric) {
      const double lo = padding == Padding::kReflection ? 0.0 : -0.5;
      const double span = padding == Padding::kReflection ? hi : static_cast<double>(n);
      if (span <= 0) return 0.0;
      double d = std::fabs(p - lo);
      d = std::fmod(d, 2 * span);
      if (d > span) d = 2 * span - d;
      return std::min(std::max(lo + d, 0.0), hi);
    }
    return p;
  }

  // The value of `plane` (H x W) at pixel coordinates (y, x).
  float sample(const float* plane, int64_t H, int64_t W, double y, double x) const {
    if (!std::isfinite(y) || !std::isfinite(x)) return pad_value;
    y = fold(y, H);
    x = fold(x, W);
    auto at = [&](int64_t r, int64_t c) { return r < 0 || r >= H || c < 0 || c >= W ? pad_value : plane[r * W + c]; };
    if (!bilinear) {  // nearest: ties to even, as the suite's expectations show
      const double ry = std::nearbyint(std::min(std::max(y, -1.0), static_cast<double>(H)));
      const double rx = std::nearbyint(std::min(std::max(x, -1.0), static_cast<double>(W)));
      return at(static_cast<int64_t>(ry), static_cast<int64_t>(rx));
    }
    y = std::min(std::max(y, -2.0), static_cast<double>(H) + 1);  // beyond one pixel out, all taps are padding
    x = std::min(std::max(x, -2.0), static_cast<double>(W) + 1);
    const double fy = std::floor(y), fx = std::floor(x);
    const auto r0 = static_cast<int64_t>(fy), c0 = static_cast<int64_t>(fx);
    const float wy = static_cast<float>(y - fy), wx = static_cast<float>(x - fx);
    const float top = at(r0, c0) + wx * (at(r0, c0 + 1) - at(r0, c0));
    const float bottom = at(r0 + 1, c0) + wx * (at(r0 + 1, c0 + 1) - at(r0 + 1, c0));
    return top + wy * (bottom - top);
  }
};

GridSampler read_sampler(const OpPlanContext& ctx) {
  GridSampler g;
  std::string s = ctx.const_string("sampling_mode"), pad = ctx.const_string("padding_mode"),
              coords = ctx.const_string("coordinates_mode");
  if (s != "bilinear" && s != "nearest") ctx.fail("unknown sampling_mode '" + s + "'");
  g.bilinear = s == "bilinear";
  const std::pair<const char*, Padding> pads[] = {{"constant", Padding::kConstant},
                                                  {"border", Padding::kBorder},
                                                  {"reflection", Padding::kReflection},
                                                  {"symmetric", Padding::kSymmetric}};
  bool known = false;
  for (const auto& [name, mode] : pads) {
    if (pad == name) g.padding = mode, known = true;
  }
  if (!known) ctx.fail("unknown padding_mode '" + pad + "'");
  if (coords == "unnormalized")
    g.coords = Coords::kUnnormalized;
  else if (coords == "normalized_minus_one_to_one")
    g.coords = Coords::kMinusOneToOne;
  else if (coords == "normalized_zero_to_one")
    g.coords = Coords::kZeroToOne;
  else
    ctx.fail("unknown coordinates_mode '" + coords + "'");
  g.align_corners = ctx.const_bool("align_corners");
  g.pad_value = static_cast<float>(ctx.const_float("padding_value"));
  return g;
}

// out[b, c, i, j] = x[b, c] sampled at coordinates[b, i, j] = (w, h).
PlannedOp build_resample(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const ValueType& ct = ctx.type("coordinates");
  if (xt.shape.size() != 4 || !is_float_dtype(xt.dtype)) ctx.fail("x must be a float [B, C, H, W] tensor");
  if (ct.shape.size() != 4 || ct.shape[3] != 2 || ct.shape[0] != xt.shape[0])
    ctx.fail("coordinates must be [B, H_out, W_out, 2]");
  const GridSampler g = read_sampler(ctx);
  const int64_t B = xt.shape[0], C = xt.shape[1], H = xt.shape[2], W = xt.shape[3], oh = ct.shape[1], ow = ct.shape[2];
  const Shape out{B, C, oh, ow};
  int xs = ctx.input("x"), cs = ctx.input("coordinates");
  PlannedOp op;
  op.outputs.push_back({xt.dtype, out});
  op.scratch_bytes = static_cast<size_t>(shape_numel(xt.shape) + shape_numel(out)) * sizeof(float);
  op.run = [=](const KernelCall& call) {
    auto* buf = static_cast<float*>(call.scratch);
    const float* x = floats_of(call.in(xs), buf);
    float* y = buf + shape_numel(xt.shape);
    const Tensor& coords = call.in(cs);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          const int64_t at = ((b * oh + i) * ow + j) * 2;
          const double px = g.to_pixels(load_one(coords.dtype(), coords.data(), at), W);
          const double py = g.to_pixels(load_one(coords.dtype(), coords.data(), at + 1), H);
          for (int64_t c = 0; c < C; ++c)
            y[((b * C + c) * oh + i) * ow + j] = g.sample(x + (b * C + c) * H * W, H, W, py, px);
        }
    store_floats(call.out(0), y);
  };
  return op;
}

// The output grid in the coordinate system, mapped by [a0 a1 a2; b0 b1 b2]
// per batch (or one matrix for all), then sampled.
PlannedOp build_affine(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const ValueType& mt = ctx.type("transform_matrix");
  if (xt.shape.size() != 4 || !is_float_dtype(xt.dtype)) ctx.fail("x must be a float [B, C, H, W] tensor");
  if (mt.shape.size() != 2 || mt.shape[1] != 6 || (mt.shape[0] != 1 && mt.shape[0] != xt.shape[0])) {
    ctx.fail("transform_matrix must be [1 or B, 6]");
  }
  const GridSampler g = read_sampler(ctx);
  const int64_t B = xt.shape[0], C = xt.shape[1], H = xt.shape[2], W = xt.shape[3];
  const int64_t oh = target_size(ctx, "output_height"), ow = target_size(ctx, "output_width");
  const bool shared = mt.shape[0] == 1;
  const Shape out{B, C, oh, ow};
  // the output pixel's coordinate in the op's coordinate system (inverse of to_pixels)
  auto from_pixels = [g](int64_t p, int64_t n) {
    const double P = static_cast<double>(p), N = static_cast<double>(n);
    switch (g.coords) {
      case Coords::kUnnormalized: return P;
      case Coords::kMinusOneToOne: return g.align_corners ? (n > 1 ? 2 * P / (N - 1) - 1 : 0.0) : (2 * P + 1) / N - 1;
      case Coords::kZeroToOne: return g.align_corners ? (n > 1 ? P / (N - 1) : 0.0) : (P + 0.5) / N;
    }
    return P;
  };
  int xs = ctx.input("x"), ms = ctx.input("transform_matrix");
  PlannedOp op;
  op.outputs.push_back({xt.dtype, out});
  op.scratch_bytes = static_cast<size_t>(shape_numel(xt.shape) + shape_numel(out)) * sizeof(float);
  op.run = [=](const KernelCall& call) {
    auto* buf = static_cast<float*>(call.scratch);
    const float* x = floats_of(call.in(xs), buf);
    float* y = buf + shape_numel(xt.shape);
    const Tensor& m = call.in(ms);
    for (int64_t b = 0; b < B; ++b) {
      double a[6];
      for (int k = 0; k < 6; ++k) a[k] = load_one(m.dtype(), m.data(), (shared ? 0 : b) * 6 + k);
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          const double u = from_pixels(j, ow), v = from_pixels(i, oh);
          const double px = g.to_pixels(a[0] * u + a[1] * v + a[2], W);
          const double py = g.to_pixels(a[3] * u + a[4] * v + a[5], H);
          for (int64_t c = 0; c < C; ++c)
            y[((b * C + c) * oh + i) * ow + j] = g.sample(x + (b * C + c) * H * W, H, W, py, px);
        }
    }
    store_floats(call.out(0), y);
  };
  return op;
}

}  // namespace

void register_image_ops(OpRegistry& r) {
  r.add("upsample_nearest_neighbor", build_upsample_nearest);
  r.add("resize_nearest_neighbor", build_resize_nearest);
  r.add("upsample_bilinear", build_upsample_bilinear);
  r.add("resize_bilinear", build_resize_bilinear);
  r.add("resize", build_resize);
  r.add("crop", build_crop);
  r.add("crop_resize", build_crop_resize);
  r.add("resample", build_resample);
  r.add("affine", build_affine);
}

}  // namespace staticllm::mil

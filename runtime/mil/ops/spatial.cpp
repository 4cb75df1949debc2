#include "mil/ops/spatial.h"

#include <algorithm>
#include <string>

namespace staticllm::mil {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

std::vector<SpatialAxis> plan_spatial(const OpPlanContext& ctx, const Shape& in, const std::vector<int64_t>& kernel,
                                      const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                                      bool ceil_mode) {
  const size_t n = in.size();
  if (kernel.size() != n || strides.size() != n || dilations.size() != n) {
    ctx.fail("kernel, strides and dilations need one value per spatial axis (" + std::to_string(n) + ")");
  }
  std::string pad_type = ctx.has("pad_type") ? ctx.const_string("pad_type") : "valid";
  std::vector<int64_t> pad = ctx.has("pad") ? ctx.const_ints("pad") : std::vector<int64_t>(2 * n, 0);
  if (pad.size() != 2 * n) ctx.fail("pad needs two values per spatial axis");
  std::vector<SpatialAxis> axes(n);
  for (size_t i = 0; i < n; ++i) {
    SpatialAxis& a = axes[i];
    a.in = in[i];
    a.kernel = kernel[i];
    a.stride = strides[i];
    a.dilation = dilations[i];
    if (a.kernel < 1 || a.stride < 1 || a.dilation < 1 || a.kernel > (int64_t{1} << 30) ||
        a.dilation > (int64_t{1} << 30)) {
      ctx.fail("kernel sizes, strides and dilations must be positive");
    }
    const int64_t effective = (a.kernel - 1) * a.dilation + 1;
    if (pad_type == "same" || pad_type == "same_lower") {
      int64_t total = std::max<int64_t>(0, a.stride * ceil_div(a.in, a.stride) - a.in + effective - a.stride);
      a.pad_before = pad_type == "same" ? total / 2 : total - total / 2;
      a.pad_after = total - a.pad_before;
    } else if (pad_type == "custom") {
      a.pad_before = pad[2 * i];
      a.pad_after = pad[2 * i + 1];
      if (a.pad_before < 0 || a.pad_after < 0 || a.pad_before > (int64_t{1} << 30) || a.pad_after > (int64_t{1} << 30))
        ctx.fail("pad values must be non-negative");
    } else if (pad_type != "valid") {
      ctx.fail("unknown pad_type '" + pad_type + "'");
    }
    const int64_t span = a.in + a.pad_before + a.pad_after - effective;
    if (span < 0) ctx.fail("the window is larger than the padded input on spatial axis " + std::to_string(i));
    if (!ceil_mode) {
      a.out = span / a.stride + 1;
    } else {
      a.out = (span + a.stride - 1) / a.stride + 1;
      // the last window must start inside the input or its leading padding
      const int64_t total = a.pad_before + a.pad_after;
      if (total > 0 && 2 * (a.out - 1) * a.stride >= 2 * a.in + total) --a.out;
    }
  }
  return axes;
}

}  // namespace staticllm::mil

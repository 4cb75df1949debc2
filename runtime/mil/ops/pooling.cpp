// Pooling over 1 to 3 spatial axes of [N, C, *D]: max_pool, avg_pool,
// l2_pool. Windows are read in fp32 (fp16 widened once per call); padded
// positions never take part in a max or a sum of squares, and count in an
// average unless exclude_padding_from_average (as torch's count_include_pad:
// positions past the padding that ceil_mode adds never count).
#include <cmath>
#include <limits>

#include "mil/ops/elementwise_util.h"
#include "mil/ops/spatial.h"

namespace staticllm::mil {

namespace {

enum class Pool { kMax, kAvg, kL2 };

struct PoolPlan {
  std::vector<SpatialAxis> axes;  // always 3 (leading size-1 axes added)
  int64_t planes = 1;             // N * C
  bool exclude_padding = false;
};

// One output element of plane p at output position (o0, o1, o2).
float pool_window(Pool kind, const PoolPlan& p, const float* plane, const int64_t* o) {
  const SpatialAxis* a = p.axes.data();
  int64_t lo[3], hi[3], counted = 1;
  for (int d = 0; d < 3; ++d) {
    int64_t start = o[d] * a[d].stride - a[d].pad_before;
    int64_t end = start + (a[d].kernel - 1) * a[d].dilation + 1;
    // window positions inside the padded input count for the average
    counted *= (std::min(end, a[d].in + a[d].pad_after) - start + a[d].dilation - 1) / a[d].dilation;
    lo[d] = start;
    hi[d] = end;
  }
  double acc = kind == Pool::kMax ? -std::numeric_limits<double>::infinity() : 0.0;
  int64_t valid = 0;
  for (int64_t i0 = lo[0]; i0 < hi[0]; i0 += a[0].dilation) {
    if (i0 < 0 || i0 >= a[0].in) continue;
    for (int64_t i1 = lo[1]; i1 < hi[1]; i1 += a[1].dilation) {
      if (i1 < 0 || i1 >= a[1].in) continue;
      for (int64_t i2 = lo[2]; i2 < hi[2]; i2 += a[2].dilation) {
        if (i2 < 0 || i2 >= a[2].in) continue;
        double v = plane[(i0 * a[1].in + i1) * a[2].in + i2];
        ++valid;
        if (kind == Pool::kMax)
          acc = std::max(acc, v);
        else
          acc += kind == Pool::kL2 ? v * v : v;
      }
    }
  }
  if (kind == Pool::kL2) return static_cast<float>(std::sqrt(acc));
  if (kind == Pool::kAvg) {
    int64_t count = p.exclude_padding ? valid : counted;
    return static_cast<float>(count > 0 ? acc / static_cast<double>(count) : 0.0);
  }
  return static_cast<float>(acc);
}

OpBuilder pool(Pool kind) {
  return [kind](OpPlanContext& ctx) {
    const ValueType& xt = ctx.type("x");
    if (!is_float_dtype(xt.dtype)) ctx.fail(std::string("x must be fp16 or fp32, got ") + dtype_name(xt.dtype));
    const size_t rank = xt.shape.size();
    if (rank < 3 || rank > 5) ctx.fail("pooling needs x of rank 3 to 5 ([N, C, 1 to 3 spatial axes])");
    const size_t n = rank - 2;
    Shape spatial(xt.shape.begin() + 2, xt.shape.end());
    std::vector<int64_t> strides = ctx.has("strides") ? ctx.const_ints("strides") : std::vector<int64_t>(n, 1);
    PoolPlan p;
    std::vector<SpatialAxis> axes = plan_spatial(ctx, spatial, ctx.const_ints("kernel_sizes"), strides,
                                                 std::vector<int64_t>(n, 1), ctx.const_bool_or("ceil_mode", false));
    p.axes.assign(3 - n, SpatialAxis{});
    p.axes.insert(p.axes.end(), axes.begin(), axes.end());
    p.planes = xt.shape[0] * xt.shape[1];
    p.exclude_padding = ctx.const_bool_or("exclude_padding_from_average", false);
    Shape out = {xt.shape[0], xt.shape[1]};
    for (const SpatialAxis& a : axes) out.push_back(a.out);
    const int64_t in_plane = shape_numel(spatial), out_plane = shape_numel(out) / std::max<int64_t>(1, p.planes);
    int xs = ctx.input("x");
    PlannedOp op;
    op.outputs.push_back({xt.dtype, out});
    op.scratch_bytes = static_cast<size_t>(shape_numel(xt.shape) + shape_numel(out)) * sizeof(float);
    op.run = [=](const KernelCall& call) {
      auto* buf = static_cast<float*>(call.scratch);
      const float* x = floats_of(call.in(xs), buf);
      float* y = buf + p.planes * in_plane;
      const SpatialAxis* a = p.axes.data();
      for (int64_t pl = 0; pl < p.planes; ++pl) {
        float* dst = y + pl * out_plane;
        int64_t o[3];
        for (o[0] = 0; o[0] < a[0].out; ++o[0])
          for (o[1] = 0; o[1] < a[1].out; ++o[1])
            for (o[2] = 0; o[2] < a[2].out; ++o[2]) *dst++ = pool_window(kind, p, x + pl * in_plane, o);
      }
      store_floats(call.out(0), y);
    };
    return op;
  };
}

}  // namespace

void register_pooling_ops(OpRegistry& r) {
  r.add("max_pool", pool(Pool::kMax));
  r.add("avg_pool", pool(Pool::kAvg));
  r.add("l2_pool", pool(Pool::kL2));
}

}  // namespace staticllm::mil

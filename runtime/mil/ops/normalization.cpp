// Normalization ops: batch_norm (given statistics), instance_norm,
// layer_norm and l2_norm (statistics over groups of elements), and
// local_response_norm (over neighbouring channels). Inputs are read as fp32
// (fp16 converted), statistics accumulate in double, results are stored in
// the input's dtype.
#include <cmath>

#include "mil/ops/elementwise_util.h"

namespace staticllm::mil {

namespace {

// Elements normalised together: for group g and member m the element at
// offset group_off[g] + member_off[m]. Members run over the chosen axes in
// increasing axis order (the order of layer_norm's gamma and beta).
struct Groups {
  std::vector<int64_t> group_off, member_off;
};

std::vector<int64_t> offsets_over(const Shape& shape, const std::vector<int64_t>& strides,
                                  const std::vector<bool>& take) {
  std::vector<int64_t> offs{0};
  for (size_t d = 0; d < shape.size(); ++d) {
    if (!take[d]) continue;
    std::vector<int64_t> next;
    next.reserve(offs.size() * static_cast<size_t>(shape[d]));
    for (int64_t o : offs)
      for (int64_t i = 0; i < shape[d]; ++i) next.push_back(o + i * strides[d]);
    offs = std::move(next);
  }
  return offs;
}

Groups split(const Shape& shape, const std::vector<bool>& member_axis) {
  std::vector<int64_t> strides = contiguous_strides(shape);
  std::vector<bool> group_axis(member_axis.size());
  for (size_t d = 0; d < member_axis.size(); ++d) group_axis[d] = !member_axis[d];
  return {offsets_over(shape, strides, group_axis), offsets_over(shape, strides, member_axis)};
}

void require_float(const OpPlanContext& ctx, const ValueType& xt) {
  if (!is_float_dtype(xt.dtype)) ctx.fail(std::string("x must be fp16 or fp32, got ") + dtype_name(xt.dtype));
}

// A per-channel (or per-member) constant of `n` values, or `fallback` repeated when absent.
std::vector<float> per_index(const OpPlanContext& ctx, const std::string& param, int64_t n, float fallback) {
  if (!ctx.has(param)) return std::vector<float>(static_cast<size_t>(n), fallback);
  std::vector<float> v = const_floats(ctx, param);
  if (static_cast<int64_t>(v.size()) != n) {
    ctx.fail("'" + param + "' has " + std::to_string(v.size()) + " values, expected " + std::to_string(n));
  }
  return v;
}

float epsilon_or(const OpPlanContext& ctx, double fallback) {
  return static_cast<float>(ctx.has("epsilon") ? ctx.const_float("epsilon") : fallback);
}

// The output type: x's, stored in the float dtype the program declares when
// that differs. coremltools writes such programs for iOS15: when it turns an
// fp16 input into fp32 I/O and cannot insert the cast back ("the dtype of
// the input 'x' is changed to fp32 without inserting any cast op"), x is
// fp32 beside fp16 constants and an fp16 output.
ValueType output_type(const OpPlanContext& ctx, const ValueType& xt) {
  const std::vector<ValueType>& declared = ctx.declared_outputs();
  if (declared.size() == 1 && is_float_dtype(declared[0].dtype)) return {declared[0].dtype, xt.shape};
  return xt;
}

// A kernel reading x as fp32 into scratch and writing fp32 results into
// scratch before storing them: body(x, y) fills y from x (numel each).
template <typename Body>
PlannedOp float_kernel(OpPlanContext& ctx, const ValueType& xt, Body body) {
  int64_t n = shape_numel(xt.shape);
  int xs = ctx.input("x");
  PlannedOp op;
  op.outputs.push_back(output_type(ctx, xt));
  op.scratch_bytes = static_cast<size_t>(2 * n) * sizeof(float);
  op.run = [=](const KernelCall& call) {
    auto* buf = static_cast<float*>(call.scratch);
    const float* x = floats_of(call.in(xs), buf);
    float* y = buf + n;
    body(x, y);
    store_floats(call.out(0), y);
  };
  return op;
}

// y = (x - mean) / sqrt(var + eps) * gamma[m or c] + beta over each group.
// `per_member` picks gamma/beta by member index (layer_norm), else by group
// through `channel_of_group` (instance_norm).
PlannedOp plan_group_norm(OpPlanContext& ctx, const ValueType& xt, const Groups& g, std::vector<float> gamma,
                          std::vector<float> beta, std::vector<int64_t> param_of_group, float eps) {
  bool per_member = param_of_group.empty();
  return float_kernel(ctx, xt, [=](const float* x, float* y) {
    const double count = static_cast<double>(g.member_off.size());
    for (size_t gi = 0; gi < g.group_off.size(); ++gi) {
      const int64_t base = g.group_off[gi];
      double sum = 0;
      for (int64_t m : g.member_off) sum += x[base + m];
      const double mean = sum / count;
      double sq = 0;
      for (int64_t m : g.member_off) sq += (x[base + m] - mean) * (x[base + m] - mean);
      const double inv = 1.0 / std::sqrt(sq / count + eps);
      for (size_t mi = 0; mi < g.member_off.size(); ++mi) {
        size_t p = per_member ? mi : static_cast<size_t>(param_of_group[gi]);
        y[base + g.member_off[mi]] = static_cast<float>((x[base + g.member_off[mi]] - mean) * inv * gamma[p] + beta[p]);
      }
    }
  });
}

PlannedOp build_batch_norm(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  require_float(ctx, xt);
  if (xt.shape.size() < 2) ctx.fail("batch_norm needs x of rank >= 2 ([N, C, ...])");
  int64_t C = xt.shape[1];
  std::vector<float> mean = per_index(ctx, "mean", C, 0.f), var = per_index(ctx, "variance", C, 1.f);
  std::vector<float> gamma = per_index(ctx, "gamma", C, 1.f), beta = per_index(ctx, "beta", C, 0.f);
  double eps = epsilon_or(ctx, 1e-5);
  // y = x * scale[c] + shift[c], folded once in double
  std::vector<float> scale(C), shift(C);
  for (int64_t c = 0; c < C; ++c) {
    double s = gamma[c] / std::sqrt(static_cast<double>(var[c]) + eps);
    scale[c] = static_cast<float>(s);
    shift[c] = static_cast<float>(beta[c] - mean[c] * s);
  }
  int64_t inner = shape_numel(xt.shape) / std::max<int64_t>(1, xt.shape[0] * C);
  int64_t n = shape_numel(xt.shape);
  return float_kernel(ctx, xt, [=](const float* x, float* y) {
    for (int64_t i = 0; i < n; ++i) {
      int64_t c = (i / std::max<int64_t>(inner, 1)) % C;
      y[i] = x[i] * scale[c] + shift[c];
    }
  });
}

PlannedOp build_instance_norm(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  require_float(ctx, xt);
  size_t rank = xt.shape.size();
  if (rank < 3) ctx.fail("instance_norm needs x of rank >= 3 ([N, C, spatial...])");
  int64_t C = xt.shape[1];
  std::vector<bool> member(rank, true);
  member[0] = member[1] = false;
  Groups g = split(xt.shape, member);
  std::vector<int64_t> channel(g.group_off.size());
  for (size_t i = 0; i < channel.size(); ++i) channel[i] = static_cast<int64_t>(i) % C;  // groups run [N, C]
  return plan_group_norm(ctx, xt, g, per_index(ctx, "gamma", C, 1.f), per_index(ctx, "beta", C, 0.f), channel,
                         epsilon_or(ctx, 1e-5));
}

PlannedOp build_layer_norm(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  require_float(ctx, xt);
  int64_t rank = static_cast<int64_t>(xt.shape.size());
  std::vector<bool> member(rank, !ctx.has("axes"));
  if (ctx.has("axes")) {
    for (int64_t a : ctx.const_ints("axes")) member[normalize_axis(ctx, a, rank)] = true;
  }
  Groups g = split(xt.shape, member);
  auto count = static_cast<int64_t>(g.member_off.size());
  return plan_group_norm(ctx, xt, g, per_index(ctx, "gamma", count, 1.f), per_index(ctx, "beta", count, 0.f), {},
                         epsilon_or(ctx, 1e-5));
}

// x / sqrt(sum(x^2) + eps) over the last three axes (leading axes are batches).
PlannedOp build_l2_norm(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  require_float(ctx, xt);
  size_t rank = xt.shape.size();
  if (rank < 3) ctx.fail("l2_norm needs x of rank >= 3");
  std::vector<bool> member(rank, false);
  for (size_t d = rank - 3; d < rank; ++d) member[d] = true;
  Groups g = split(xt.shape, member);
  double eps = epsilon_or(ctx, 1e-6);
  return float_kernel(ctx, xt, [=](const float* x, float* y) {
    for (int64_t base : g.group_off) {
      double sq = 0;
      for (int64_t m : g.member_off) sq += static_cast<double>(x[base + m]) * x[base + m];
      const double inv = 1.0 / std::sqrt(sq + eps);
      for (int64_t m : g.member_off) y[base + m] = static_cast<float>(x[base + m] * inv);
    }
  });
}

// x_c / (k + alpha / size * sum of x^2 over channels [c - size/2, c + (size-1)/2])^beta.
// The channel axis is the third from the end (axis 1 of [N, C, H, W]; axis 0
// of a rank-3 x, read as [C, H, W]), as Core ML's local response
// normalization counts it: coremltools' reference values for a [1, 3, 2]
// input normalize each element by itself alone.
PlannedOp build_local_response_norm(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  require_float(ctx, xt);
  const int64_t rank = static_cast<int64_t>(xt.shape.size());
  if (rank < 3) ctx.fail("local_response_norm needs x of rank >= 3 ([..., C, H, W])");
  int64_t size = ctx.const_int("size");
  if (size < 1) ctx.fail("size must be positive, got " + std::to_string(size));
  double alpha = ctx.has("alpha") ? ctx.const_float("alpha") : 1e-4;
  double beta = ctx.has("beta") ? ctx.const_float("beta") : 0.75;
  double k = ctx.has("k") ? ctx.const_float("k") : 1.0;
  const int64_t C = xt.shape[rank - 3], inner = xt.shape[rank - 2] * xt.shape[rank - 1];
  const int64_t N = shape_numel(xt.shape) / std::max<int64_t>(1, C * inner);
  return float_kernel(ctx, xt, [=](const float* x, float* y) {
    for (int64_t b = 0; b < N; ++b) {
      for (int64_t c = 0; c < C; ++c) {
        int64_t lo = std::max<int64_t>(0, c - size / 2), hi = std::min<int64_t>(C - 1, c + (size - 1) / 2);
        for (int64_t i = 0; i < inner; ++i) {
          double sq = 0;
          for (int64_t j = lo; j <= hi; ++j) {
            double v = x[(b * C + j) * inner + i];
            sq += v * v;
          }
          int64_t at = (b * C + c) * inner + i;
          y[at] = static_cast<float>(x[at] / std::pow(k + alpha / static_cast<double>(size) * sq, beta));
        }
      }
    }
  });
}

}  // namespace

void register_normalization_ops(OpRegistry& r) {
  r.add("batch_norm", build_batch_norm);
  r.add("instance_norm", build_instance_norm);
  r.add("layer_norm", build_layer_norm);
  r.add("l2_norm", build_l2_norm);
  r.add("local_response_norm", build_local_response_norm);
}

}  // namespace staticllm::mil

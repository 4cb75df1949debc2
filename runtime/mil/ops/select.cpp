// select (where), cast, and ops that produce tensors from constants or
// shapes: fill, fill_like, range_1d, band_part, one_hot.
#include <cmath>

#include "mil/ops/elementwise_util.h"
#include "mil/ops/indices.h"

namespace staticllm::mil {

namespace {

template <typename C>
void run_select(const BroadcastPlan& plan, const Tensor& c, const Tensor& a, const Tensor& b, Tensor& out) {
  C cb[kBlock], ab[kBlock], bb[kBlock], ob[kBlock];
  plan.for_each_run([&](const int64_t* offs, const int64_t* steps, int64_t out_off, int64_t len) {
    const C* cs = load_run<C>(c.dtype(), c.data(), offs[0], steps[0], len, cb);
    const C* as = load_run<C>(a.dtype(), a.data(), offs[1], steps[1], len, ab);
    const C* bs = load_run<C>(b.dtype(), b.data(), offs[2], steps[2], len, bb);
    for (int64_t i = 0; i < len; ++i) ob[i] = cs[i] != C(0) ? as[i] : bs[i];
    store_run<C>(out.dtype(), out.data(), out_off, len, ob);
  });
}

PlannedOp build_select(OpPlanContext& ctx) {
  const ValueType& ct = ctx.type("cond");
  const ValueType& at = ctx.type("a");
  const ValueType& bt = ctx.type("b");
  if (at.dtype != bt.dtype) ctx.fail("a and b must have the same dtype");
  BroadcastPlan plan;
  if (!plan_broadcast({ct.shape, at.shape, bt.shape}, &plan)) ctx.fail("cond, a and b do not broadcast");
  int cs = ctx.input("cond"), as = ctx.input("a"), bs = ctx.input("b");
  bool use_float = is_float_dtype(at.dtype);
  PlannedOp op;
  op.outputs.push_back({at.dtype, plan.out_shape});
  op.run = [=](const KernelCall& call) {
    if (use_float)
      run_select<float>(plan, call.in(cs), call.in(as), call.in(bs), call.out(0));
    else
      run_select<double>(plan, call.in(cs), call.in(as), call.in(bs), call.out(0));
  };
  return op;
}

bool cast_target(const std::string& name, DType* out) {
  if (dtype_from_name(name, out)) return true;
  // MIL spells some types differently from metadata.json.
  if (name == "int32") {
    *out = DType::kInt32;
    return true;
  }
  if (name == "float16") {
    *out = DType::kFloat16;
    return true;
  }
  if (name == "float32") {
    *out = DType::kFloat32;
    return true;
  }
  return false;
}

template <typename C>
void run_cast(const Tensor& x, Tensor& out, bool to_int) {
  C buf[kBlock], res[kBlock];
  int64_t n = x.numel();
  for (int64_t start = 0; start < n; start += kBlock) {
    int64_t len = std::min(kBlock, n - start);
    const C* v = load_run<C>(x.dtype(), x.data(), start, 1, len, buf);
    if (to_int) {
      for (int64_t i = 0; i < len; ++i) res[i] = std::trunc(v[i]);
      v = res;
    }
    store_run<C>(out.dtype(), out.data(), start, len, v);
  }
}

PlannedOp build_cast(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  std::string name = ctx.const_string("dtype");
  DType target;
  if (!cast_target(name, &target)) ctx.fail("unknown cast dtype '" + name + "'");
  int xs = ctx.input("x");
  bool via_float = is_float_dtype(xt.dtype) && is_float_dtype(target);
  bool to_int = !is_float_dtype(target) && target != DType::kBool;
  PlannedOp op;
  op.outputs.push_back({target, xt.shape});
  op.run = [=](const KernelCall& call) {
    if (via_float)
      run_cast<float>(call.in(xs), call.out(0), false);
    else
      run_cast<double>(call.in(xs), call.out(0), to_int);
  };
  return op;
}

// A kernel that writes `value` to every element of output 0, in its dtype
// (fill and fill_like).
KernelFn fill_with(double value) {
  return [value](const KernelCall& call) {
    Tensor& o = call.out(0);
    double buf[kBlock];
    std::fill(buf, buf + kBlock, value);
    for (int64_t s = 0; s < o.numel(); s += kBlock) {
      store_run<double>(o.dtype(), o.data(), s, std::min(kBlock, o.numel() - s), buf);
    }
  };
}

PlannedOp build_fill(OpPlanContext& ctx) {
  std::vector<int64_t> shape = ctx.const_ints("shape");
  double value = ctx.has("value") ? ctx.const_float("value") : 0.0;
  DType dtype = ctx.has("value") ? ctx.type("value").dtype : DType::kFloat32;
  PlannedOp op;
  op.outputs.push_back({dtype, shape});
  op.run = fill_with(value);
  return op;
}

PlannedOp build_range_1d(OpPlanContext& ctx) {
  double start = ctx.const_float("start"), end = ctx.const_float("end"), step = ctx.const_float("step");
  if (step == 0) ctx.fail("range_1d step is 0");
  // Bounded before the cast: a double past int64 (or NaN) has no integer value.
  double count = std::ceil((end - start) / step);
  if (!(count < 1e12))
    ctx.fail("range_1d from " + std::to_string(start) + " to " + std::to_string(end) + " by " + std::to_string(step) +
             " has too many elements");
  int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  DType dtype = ctx.type("start").dtype;
  PlannedOp op;
  op.outputs.push_back({dtype, {n}});
  op.run = [=](const KernelCall& call) {
    for (int64_t i = 0; i < n; ++i) {
      double v = start + static_cast<double>(i) * step;
      store_run<double>(call.out(0).dtype(), call.out(0).data(), i, 1, &v);
    }
  };
  return op;
}

// Keeps a band of the last two dims: lower/upper < 0 keep everything that side.
PlannedOp build_band_part(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  int64_t rank = static_cast<int64_t>(xt.shape.size());
  if (rank < 2) ctx.fail("band_part needs rank >= 2");
  int64_t lower = ctx.const_int_or("lower", -1), upper = ctx.const_int_or("upper", -1);
  int64_t rows = xt.shape[rank - 2], cols = xt.shape[rank - 1];
  int64_t mats = shape_numel(xt.shape) / std::max<int64_t>(rows * cols, 1);
  size_t elem = dtype_size(xt.dtype);
  int xs = ctx.input("x");
  PlannedOp op;
  op.outputs.push_back(xt);
  op.run = [=](const KernelCall& call) {
    const auto* src = static_cast<const uint8_t*>(call.in(xs).data());
    auto* dst = static_cast<uint8_t*>(call.out(0).data());
    for (int64_t m = 0; m < mats; ++m) {
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < cols; ++j) {
          bool keep = (lower < 0 || i - j <= lower) && (upper < 0 || j - i <= upper);
          int64_t off = ((m * rows + i) * cols + j) * static_cast<int64_t>(elem);
          if (keep)
            std::memcpy(dst + off, src + off, elem);
          else
            std::memset(dst + off, 0, elem);
        }
      }
    }
  };
  return op;
}

// A tensor of ref_tensor's shape filled with `value` (in the declared dtype).
PlannedOp build_fill_like(OpPlanContext& ctx) {
  const ValueType& rt = ctx.type("ref_tensor");
  double value = ctx.has("value") ? ctx.const_float("value") : 0.0;
  DType dtype = ctx.has("value") ? ctx.type("value").dtype : DType::kFloat32;
  if (ctx.declared_outputs().size() == 1) dtype = ctx.declared_outputs()[0].dtype;
  PlannedOp op;
  op.outputs.push_back({dtype, rt.shape});
  op.run = fill_with(value);
  return op;
}

// indices [..] -> [.., size, ..] (the new axis at `axis`): on_value where
// the index along the new axis equals indices[..], off_value elsewhere; an
// index outside [0, size) gives a vector of off_value (as TensorFlow's one_hot).
PlannedOp build_one_hot(OpPlanContext& ctx) {
  const ValueType& it = ctx.type("indices");
  if (!is_index_dtype(it.dtype)) ctx.fail("indices must be integers");
  const int64_t size = ctx.const_int("one_hot_vector_size");
  if (size < 0 || size > (int64_t{1} << 31)) ctx.fail("one_hot_vector_size out of range");
  const int64_t rank = static_cast<int64_t>(it.shape.size());
  const int64_t axis = normalize_axis(ctx, ctx.const_int_or("axis", -1), rank + 1);
  const double on = ctx.has("on_value") ? ctx.const_float("on_value") : 1.0;
  const double off = ctx.has("off_value") ? ctx.const_float("off_value") : 0.0;
  DType dtype = ctx.has("on_value") ? ctx.type("on_value").dtype : DType::kInt32;
  if (ctx.declared_outputs().size() == 1) dtype = ctx.declared_outputs()[0].dtype;
  Shape out = it.shape;
  out.insert(out.begin() + axis, size);
  const int64_t inner = shape_numel(Shape(it.shape.begin() + axis, it.shape.end()));
  int is = ctx.input("indices");
  PlannedOp op;
  op.outputs.push_back({dtype, out});
  op.run = [=](const KernelCall& call) {
    const Tensor& idx = call.in(is);
    Tensor& o = call.out(0);
    for (int64_t i = 0; i < o.numel(); ++i) {
      const int64_t k = (i / inner) % size, at = (i / (inner * size)) * inner + i % inner;
      store_one(o.dtype(), o.data(), i, read_index(idx, at) == k ? on : off);
    }
  };
  return op;
}

}  // namespace

void register_select_ops(OpRegistry& r) {
  r.add("select", build_select);
  r.add("cast", build_cast);
  r.add("fill", build_fill);
  r.add("range_1d", build_range_1d);
  r.add("band_part", build_band_part);
  r.add("fill_like", build_fill_like);
  r.add("one_hot", build_one_hot);
}

}  // namespace staticllm::mil

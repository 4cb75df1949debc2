// The general products behind linear_mixed.h: operands read in double
// (exact for int32 and every float), batch dims broadcast as numpy does, the
// result stored in the declared dtype. Clarity over speed: the models that
// matter run the gemm kernels of linear.cpp.
#include "mil/ops/linear_mixed.h"

#include <algorithm>

#include "mil/ops/elementwise_util.h"

namespace staticllm::mil {

namespace {

bool product_dtype(DType t) { return t == DType::kFloat16 || t == DType::kFloat32 || t == DType::kInt32; }

// The output dtype: the declared one, else the non-constant operand's.
DType result_dtype(const OpPlanContext& ctx, const char* a, const char* b) {
  if (ctx.declared_outputs().size() == 1) return ctx.declared_outputs()[0].dtype;
  return ctx.constant(a) != nullptr ? ctx.type(b).dtype : ctx.type(a).dtype;
}

}  // namespace

// Element offsets of `own` (right-aligned, size-1 dims broadcast) for every
// index of `batch`, `matrix` elements per batch entry.
std::vector<int64_t> broadcast_offsets(const Shape& batch, const Shape& own, int64_t matrix) {
  std::vector<int64_t> strides(batch.size(), 0);
  int64_t stride = matrix;
  for (size_t d = 0; d < own.size(); ++d) {
    const size_t bd = batch.size() - 1 - d;
    const int64_t dim = own[own.size() - 1 - d];
    strides[bd] = dim == 1 ? 0 : stride;
    stride *= dim;
  }
  std::vector<int64_t> offs;
  for (int64_t i = 0; i < shape_numel(batch); ++i) {
    int64_t rem = i, off = 0;
    for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0; --d) {
      off += (rem % batch[d]) * strides[d];
      rem /= batch[d];
    }
    offs.push_back(off);
  }
  return offs;
}

namespace {

// The gemm path of linear.cpp takes fp16 / fp32 operands in any mix and
// produces x's dtype; anything else comes here.
bool gemm_path(const OpPlanContext& ctx, const char* b) {
  auto is_float = [](DType t) { return t == DType::kFloat16 || t == DType::kFloat32; };
  const DType x = ctx.type("x").dtype;
  const bool declared_other = ctx.declared_outputs().size() == 1 && ctx.declared_outputs()[0].dtype != x;
  return is_float(x) && is_float(ctx.type(b).dtype) && !declared_other;
}

}  // namespace

bool needs_mixed_matmul(const OpPlanContext& ctx) {
  return !gemm_path(ctx, "y") || ctx.type("x").shape.size() < 2 || ctx.type("y").shape.size() < 2;
}

bool needs_mixed_linear(const OpPlanContext& ctx) { return !gemm_path(ctx, "weight"); }

PlannedOp plan_mixed_matmul(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const ValueType& yt = ctx.type("y");
  if (!product_dtype(xt.dtype) || !product_dtype(yt.dtype)) ctx.fail("matmul needs fp16, fp32 or int32 operands");
  if (xt.shape.empty() || yt.shape.empty()) ctx.fail("matmul needs operands of rank >= 1");
  const bool tx = ctx.const_bool_or("transpose_x", false), ty = ctx.const_bool_or("transpose_y", false);
  // rank-1 operands: x as [1, K] (a row), y as [K, 1] (a column), dropped from the result
  const bool x_vec = xt.shape.size() == 1, y_vec = yt.shape.size() == 1;
  Shape xs = x_vec ? Shape{1, xt.shape[0]} : xt.shape, ys = y_vec ? Shape{yt.shape[0], 1} : yt.shape;
  const size_t xr = xs.size(), yr = ys.size();
  const bool txm = tx && !x_vec, tym = ty && !y_vec;
  const int64_t M = txm ? xs[xr - 1] : xs[xr - 2], K = txm ? xs[xr - 2] : xs[xr - 1];
  const int64_t ky = tym ? ys[yr - 1] : ys[yr - 2], N = tym ? ys[yr - 2] : ys[yr - 1];
  if (ky != K) ctx.fail("inner dimensions differ: " + shape_to_string(xt.shape) + " x " + shape_to_string(yt.shape));
  Shape xb(xs.begin(), xs.end() - 2), yb(ys.begin(), ys.end() - 2), batch;
  if (!broadcast_shapes(xb, yb, &batch)) ctx.fail("batch dimensions do not broadcast");
  Shape out = batch;
  if (!x_vec) out.push_back(M);
  if (!y_vec) out.push_back(N);
  const std::vector<int64_t> xo = broadcast_offsets(batch, xb, M * K), yo = broadcast_offsets(batch, yb, K * N);
  // element strides of (row, inner) in x and (inner, column) in y
  const int64_t xm = txm ? 1 : K, xk = txm ? M : 1, yk = tym ? 1 : N, yn = tym ? K : 1;
  const DType out_dtype = result_dtype(ctx, "x", "y");
  int xsl = ctx.input("x"), ysl = ctx.input("y");
  PlannedOp op;
  op.outputs.push_back({out_dtype, out});
  op.run = [=](const KernelCall& call) {
    const Tensor& x = call.in(xsl);
    const Tensor& y = call.in(ysl);
    Tensor& o = call.out(0);
    for (size_t b = 0; b < xo.size(); ++b)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double acc = 0;
          for (int64_t k = 0; k < K; ++k) {
            acc += load_one(x.dtype(), x.data(), xo[b] + m * xm + k * xk) *
                   load_one(y.dtype(), y.data(), yo[b] + k * yk + n * yn);
          }
          store_one(o.dtype(), o.data(), (static_cast<int64_t>(b) * M + m) * N + n, acc);
        }
  };
  return op;
}

PlannedOp plan_mixed_linear(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const ValueType& wt = ctx.type("weight");
  if (!product_dtype(xt.dtype) || !product_dtype(wt.dtype)) ctx.fail("linear needs fp16, fp32 or int32 operands");
  if (xt.shape.empty() || wt.shape.size() != 2) ctx.fail("linear needs x of rank >= 1 and a rank-2 weight");
  const int64_t K = xt.shape.back(), N = wt.shape[0];
  if (wt.shape[1] != K)
    ctx.fail("weight " + shape_to_string(wt.shape) + " does not match x " + shape_to_string(xt.shape));
  const bool has_bias = ctx.has("bias");
  if (has_bias && shape_numel(ctx.type("bias").shape) != N) ctx.fail("bias must hold " + std::to_string(N) + " values");
  const int64_t M = shape_numel(xt.shape) / std::max<int64_t>(K, 1);
  Shape out = xt.shape;
  out.back() = N;
  const DType out_dtype = result_dtype(ctx, "x", "weight");
  int xs = ctx.input("x"), ws = ctx.input("weight"), bs = has_bias ? ctx.input("bias") : -1;
  PlannedOp op;
  op.outputs.push_back({out_dtype, out});
  op.run = [=](const KernelCall& call) {
    const Tensor& x = call.in(xs);
    const Tensor& w = call.in(ws);
    Tensor& o = call.out(0);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = bs >= 0 ? load_one(call.in(bs).dtype(), call.in(bs).data(), n) : 0.0;
        for (int64_t k = 0; k < K; ++k)
          acc += load_one(x.dtype(), x.data(), m * K + k) * load_one(w.dtype(), w.data(), n * K + k);
        store_one(o.dtype(), o.data(), m * N + n, acc);
      }
  };
  return op;
}

}  // namespace staticllm::mil

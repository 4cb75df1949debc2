// linear and matmul on the gemm kernels. Activations are widened to fp32 once
// per call into scratch; fp16 weights (and fp16 right-hand matmul operands in
// [N, K] layout) are read as stored. Work is split across the thread pool:
// over output features for linear, over batches for matmul.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "mil/kernels/aligned_vector.h"
#include "mil/kernels/compressed.h"
#include "mil/kernels/gemm.h"
#include "mil/ops/elementwise_util.h"
#include "mil/ops/linear_mixed.h"
#include "mil/thread_pool.h"

namespace staticllm::mil {

namespace {

bool is_gemm_dtype(DType t) { return t == DType::kFloat16 || t == DType::kFloat32; }

WeightType weight_type(DType t) { return t == DType::kFloat16 ? WeightType::kF16 : WeightType::kF32; }

// Columns [c0, c1) of y[M, N] = x[M, K] W for W stored [K, N]: a block of
// kWholePanelCols columns of W at a time (whole panels of the kernel) is
// expanded (K x 48 floats, cache-sized) and multiplied by the panel kernel
// into a [M, 48] tile copied into y.
void gemm_nn_compressed(const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t c0, int64_t c1) {
  constexpr int64_t kCols = kWholePanelCols;
  const int64_t K = w.rows, N = w.cols;
  thread_local AlignedVector<float> block, tile;
  block.resize(static_cast<size_t>(K * kCols));
  tile.resize(static_cast<size_t>(M * kCols));
  for (int64_t c = c0; c < c1; c += kCols) {
    const int64_t nc = std::min(kCols, c1 - c);
    decode_compressed_block(w, 0, K, c, c + nc, block.data());
    gemm_nn(x, K, block.data(), WeightType::kF32, nc, tile.data(), 0, M);
    for (int64_t m = 0; m < M; ++m) std::copy(tile.data() + m * nc, tile.data() + (m + 1) * nc, y + m * N + c);
  }
}

// y = x W^T (W stored [N, K]) or x W (W stored [K, N], compressed only),
// for x [..., K] and a rank-2 weight, plus an optional bias.
PlannedOp plan_weight_product(OpPlanContext& ctx, const std::string& w_param, bool nk, bool has_bias) {
  const ValueType& xt = ctx.type("x");
  const ValueType& wt = ctx.type(w_param);
  const std::string what = ctx.op_type();
  if (!is_gemm_dtype(xt.dtype) || !is_gemm_dtype(wt.dtype)) ctx.fail(what + " needs fp16 or fp32 x and weight");
  if (xt.shape.empty() || wt.shape.size() != 2) ctx.fail(what + " needs x of rank >= 1 and a rank-2 weight");
  int64_t K = xt.shape.back(), N = nk ? wt.shape[0] : wt.shape[1];
  if ((nk ? wt.shape[1] : wt.shape[0]) != K) {
    ctx.fail("weight " + shape_to_string(wt.shape) + " does not match x " + shape_to_string(xt.shape));
  }
  if (has_bias) {
    const ValueType& bt = ctx.type("bias");
    if (shape_numel(bt.shape) != N || !is_gemm_dtype(bt.dtype))
      ctx.fail("bias must hold " + std::to_string(N) + " floats");
  }
  int64_t M = shape_numel(xt.shape) / std::max<int64_t>(K, 1);
  Shape out = xt.shape;
  out.back() = N;
  std::shared_ptr<const CompressedWeight> cw = ctx.compressed(w_param);  // read as stored, never expanded
  if (!nk && !cw) ctx.fail("a [K, N] weight needs the compressed kernels");
  int xs = ctx.input("x"), ws = cw ? -1 : ctx.input(w_param), bs = has_bias ? ctx.input("bias") : -1;
  bool x_f32 = xt.dtype == DType::kFloat32;
  bool out_f32 = xt.dtype == DType::kFloat32;
  WeightType wtype = weight_type(wt.dtype);
  PlannedOp op;
  op.outputs.push_back({xt.dtype, out});
  op.scratch_bytes = static_cast<size_t>((x_f32 ? 0 : M * K) + (out_f32 ? 0 : M * N) + N) * sizeof(float) + 128;
  op.run = [=](const KernelCall& call) {
    auto* scratch = static_cast<float*>(call.scratch);
    const float* x = x_f32 ? call.in(xs).data_as<float>() : scratch;
    if (!x_f32) half_to_float_n(call.in(xs).data_as<half_bits>(), scratch, M * K);
    float* y = out_f32 ? call.out(0).data_as<float>() : scratch + (x_f32 ? 0 : M * K);
    float* spare = y + M * N;      // N floats
    if (out_f32) spare = scratch;  // y lives in the output; scratch is free
    if (!nk) {
      parallel_output_rows(call.pool, N, M * N * K,
                           [&](int64_t n0, int64_t n1) { gemm_nn_compressed(x, M, *cw, y, n0, n1); });
    } else if (cw) {
      parallel_output_rows(call.pool, N, M * N * K,
                           [&](int64_t n0, int64_t n1) { gemm_nt_compressed(x, M, *cw, y, N, n0, n1); });
    } else {
      const void* w = call.in(ws).data();
      parallel_output_rows(call.pool, N, M * N * K,
                           [&](int64_t n0, int64_t n1) { gemm_nt(x, M, K, w, wtype, y, N, n0, n1); });
    }
    if (bs >= 0) {
      const float* b = load_run<float>(call.in(bs).dtype(), call.in(bs).data(), 0, 1, N, spare);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) y[m * N + n] += b[n];
    }
    if (!out_f32) float_to_half_n(y, call.out(0).data_as<half_bits>(), M * N);
  };
  return op;
}

PlannedOp build_linear(OpPlanContext& ctx) {
  if (needs_mixed_linear(ctx)) return plan_mixed_linear(ctx);  // iOS17 mixed dtypes (linear_mixed.h)
  return plan_weight_product(ctx, "weight", true, ctx.has("bias"));
}

// Batched matmul. Per batch: x as [M, K] fp32, y read in its stored dtype,
// either [N, K] (transpose_y: gemm_nt) or [K, N] (gemm_nn). The work items
// are row chunks of every batch, so that a few large batches (attention over
// 3 kv heads on 2 threads) still split evenly; with transpose_y and too few
// rows for that (decode attention: 3 query rows per kv head), column chunks
// of the rows too.
struct MatmulPlan {
  int64_t M = 0, K = 0, N = 0, batches = 1;
  int64_t chunk_rows = 0, chunks = 1;      // rows of x per work item, row chunks per batch
  int64_t chunk_cols = 0, col_chunks = 1;  // columns of y per work item (transpose_y), column chunks per row chunk
  bool tx = false, ty = false;
  std::vector<int64_t> x_batch, y_batch;  // element offsets per output batch
  DType x_dtype = DType::kFloat32, y_dtype = DType::kFloat32, out_dtype = DType::kFloat32;
  size_t per_slot = 0;  // scratch floats per thread slot
  int slots = 1;
};

// Rows [m0, m1) of batch b, columns [n0, n1) (all of them without transpose_y).
void matmul_rows(const MatmulPlan& p, const Tensor& xt, const Tensor& yt, Tensor& out, int64_t b, int64_t m0,
                 int64_t m1, int64_t n0, int64_t n1, float* scratch) {
  const int64_t rows = m1 - m0;
  float* x = scratch;
  float* o = x + rows * p.K;
  // x rows -> [rows, K] fp32
  if (!p.tx) {
    const float* src = load_run<float>(p.x_dtype, xt.data(), p.x_batch[b] + m0 * p.K, 1, rows * p.K, x);
    if (src != x) std::memcpy(x, src, sizeof(float) * rows * p.K);
  } else {
    for (int64_t m = m0; m < m1; ++m)
      load_run<float>(p.x_dtype, xt.data(), p.x_batch[b] + m, p.M, p.K, x + (m - m0) * p.K);
  }
  bool out_f32 = p.out_dtype == DType::kFloat32;
  const int64_t out_off = b * p.M * p.N + m0 * p.N;
  float* dst = out_f32 ? out.data_as<float>() + out_off : o;
  const auto* base =
      static_cast<const uint8_t*>(yt.data()) + p.y_batch[b] * static_cast<int64_t>(dtype_size(p.y_dtype));
  if (p.ty) {
    gemm_nt(x, rows, p.K, base, weight_type(p.y_dtype), dst, p.N, n0, n1);
  } else {
    gemm_nn(x, p.K, base, weight_type(p.y_dtype), p.N, dst, 0, rows);
  }
  if (out_f32) return;
  if (n0 == 0 && n1 == p.N) return store_run<float>(p.out_dtype, out.data(), out_off, rows * p.N, dst);
  for (int64_t m = 0; m < rows; ++m)
    store_run<float>(p.out_dtype, out.data(), out_off + m * p.N + n0, n1 - n0, dst + m * p.N + n0);
}

PlannedOp build_matmul(OpPlanContext& ctx) {
  if (needs_mixed_matmul(ctx)) return plan_mixed_matmul(ctx);  // mixed dtypes, vectors (linear_mixed.h)
  const ValueType& xt = ctx.type("x");
  const ValueType& yt = ctx.type("y");
  if (!is_gemm_dtype(xt.dtype) || !is_gemm_dtype(yt.dtype)) ctx.fail("matmul needs fp16 or fp32 inputs");
  if (xt.shape.size() < 2 || yt.shape.size() < 2) ctx.fail("matmul needs inputs of rank >= 2");
  MatmulPlan p;
  p.tx = ctx.const_bool_or("transpose_x", false);
  p.ty = ctx.const_bool_or("transpose_y", false);
  // A compressed constant right-hand matrix is a weight: read as stored.
  if (ctx.compressed("y") && yt.shape.size() == 2 && !p.tx) return plan_weight_product(ctx, "y", p.ty, false);
  size_t xr = xt.shape.size(), yr = yt.shape.size();
  p.M = p.tx ? xt.shape[xr - 1] : xt.shape[xr - 2];
  p.K = p.tx ? xt.shape[xr - 2] : xt.shape[xr - 1];
  int64_t ky = p.ty ? yt.shape[yr - 1] : yt.shape[yr - 2];
  p.N = p.ty ? yt.shape[yr - 2] : yt.shape[yr - 1];
  if (ky != p.K) ctx.fail("inner dimensions differ: " + shape_to_string(xt.shape) + " x " + shape_to_string(yt.shape));
  Shape xb(xt.shape.begin(), xt.shape.end() - 2), yb(yt.shape.begin(), yt.shape.end() - 2), batch;
  if (!broadcast_shapes(xb, yb, &batch)) ctx.fail("batch dimensions do not broadcast");
  p.x_batch = broadcast_offsets(batch, xb, p.M * p.K);
  p.y_batch = broadcast_offsets(batch, yb, p.K * p.N);
  p.batches = shape_numel(batch);
  p.x_dtype = xt.dtype;
  p.y_dtype = yt.dtype;
  p.out_dtype = xt.dtype;
  p.slots = std::max(1, default_thread_pool().size());
  // About 8 items per thread, chunks of at least 16 rows (the panel kernels' minimum).
  p.chunks = std::clamp<int64_t>((8 * p.slots + p.batches - 1) / p.batches, 1, std::max<int64_t>(1, p.M / 16));
  p.chunk_rows = (p.M + p.chunks - 1) / p.chunks;
  p.chunks = (p.M + p.chunk_rows - 1) / std::max<int64_t>(1, p.chunk_rows);
  // transpose_y: when the row items do not split evenly over the threads'
  // slots, each is cut into slots / gcd column chunks (multiples of 16: the
  // kernels' row tiles), so that every slot gets the same work.
  p.chunk_cols = p.N;
  const int64_t row_items = p.batches * p.chunks;
  if (p.ty && p.slots > 1 && row_items % p.slots != 0) {
    const int64_t c = p.slots / std::gcd<int64_t>(row_items, p.slots);
    if (p.N >= 16 * c) {
      p.chunk_cols = ((p.N + c - 1) / c + 15) / 16 * 16;
      p.col_chunks = (p.N + p.chunk_cols - 1) / p.chunk_cols;
    }
  }
  p.per_slot = static_cast<size_t>(p.chunk_rows * p.K + p.chunk_rows * p.N) + 16;
  Shape out = batch;
  out.push_back(p.M);
  out.push_back(p.N);
  int xs = ctx.input("x"), ys = ctx.input("y");
  PlannedOp op;
  op.outputs.push_back({xt.dtype, out});
  op.scratch_bytes = p.per_slot * p.slots * sizeof(float);
  op.run = [p, xs, ys](const KernelCall& call) {
    auto* scratch = static_cast<float*>(call.scratch);
    const int64_t items = p.batches * p.chunks * p.col_chunks;
    auto item = [&](int64_t i, float* buf) {
      const int64_t rc = i / p.col_chunks, b = rc / p.chunks, m0 = (rc % p.chunks) * p.chunk_rows;
      const int64_t n0 = (i % p.col_chunks) * p.chunk_cols;
      matmul_rows(p, call.in(xs), call.in(ys), call.out(0), b, m0, std::min(p.M, m0 + p.chunk_rows), n0,
                  std::min(p.N, n0 + p.chunk_cols), buf);
    };
    auto work = [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s)
        for (int64_t i = s; i < items; i += p.slots) item(i, scratch + s * p.per_slot);
    };
    bool parallel = call.pool != nullptr && items > 1 && p.batches * p.M * p.N * p.K >= kParallelFlops;
    if (parallel) {
      call.pool->parallel_for(p.slots, 1, work);
    } else {
      for (int64_t i = 0; i < items; ++i) item(i, scratch);
    }
  };
  return op;
}

}  // namespace

void register_linear_ops(OpRegistry& r) {
  r.add("linear", build_linear);
  r.add("matmul", build_matmul);
}

}  // namespace staticllm::mil

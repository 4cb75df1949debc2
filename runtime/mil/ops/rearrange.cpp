// Ops that move elements to new places without computing: reverse,
// reverse_sequence, depth_to_space / space_to_depth (the TensorFlow layout:
// channel = (block row, block column, channel)), pixel_shuffle /
// pixel_unshuffle (the torch layout: channel = (channel, block row, block
// column)), space_to_batch / batch_to_space, sliding_windows. Pure
// permutations are planned as one strided copy of a higher-rank view.
#include <algorithm>
#include <cstring>

#include "mil/ops/elementwise_util.h"
#include "mil/ops/indices.h"
#include "mil/ops/strided_copy.h"

namespace staticllm::mil {

namespace {

// out = x read through a view: `dims` (sizes) with `strides` (elements of x),
// the output shape being `out`.
PlannedOp view_copy(OpPlanContext& ctx, const ValueType& xt, Shape dims, std::vector<int64_t> strides, Shape out,
                    int64_t offset = 0) {
  StridedCopy copy;
  copy.out_shape = std::move(dims);
  copy.src_strides = std::move(strides);
  copy.src_offset = offset;
  PlannedOp op = strided_op(ctx, xt, copy);
  op.outputs[0].shape = std::move(out);
  return op;
}

PlannedOp build_reverse(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const int64_t rank = static_cast<int64_t>(xt.shape.size());
  std::vector<bool> flip(rank, !ctx.has("axes"));
  if (ctx.has("axes")) {
    for (int64_t a : ctx.const_ints("axes")) flip[normalize_axis(ctx, a, rank)] = true;
  }
  std::vector<int64_t> strides = contiguous_strides(xt.shape);
  int64_t offset = 0;
  for (int64_t d = 0; d < rank; ++d) {
    if (!flip[d] || xt.shape[d] == 0) continue;
    offset += (xt.shape[d] - 1) * strides[d];
    strides[d] = -strides[d];
  }
  return view_copy(ctx, xt, xt.shape, strides, xt.shape, offset);
}

const ValueType& rank4(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  if (xt.shape.size() != 4) ctx.fail("x must be [N, C, H, W], got " + shape_to_string(xt.shape));
  return xt;
}

int64_t positive(OpPlanContext& ctx, const char* param) {
  int64_t v = ctx.const_int(param);
  if (v < 1 || v > (int64_t{1} << 20)) ctx.fail(std::string(param) + " must be positive, got " + std::to_string(v));
  return v;
}

// Channels [.., b, b, C/b^2] (blocks outermost: depth_to_space) or
// [C/b^2, b, b] (pixel_shuffle) spread into b x b spatial blocks.
PlannedOp to_space(OpPlanContext& ctx, const char* param, bool blocks_outer) {
  const ValueType& xt = rank4(ctx);
  const int64_t b = positive(ctx, param), N = xt.shape[0], C = xt.shape[1], H = xt.shape[2], W = xt.shape[3];
  if (C % (b * b) != 0) ctx.fail("channels " + std::to_string(C) + " are not a multiple of " + std::to_string(b * b));
  const int64_t c = C / (b * b), hw = H * W;
  // strides in x of (block row, block column, channel)
  const int64_t s_bh = blocks_outer ? b * c * hw : b * hw, s_bw = blocks_outer ? c * hw : hw,
                s_c = blocks_outer ? hw : b * b * hw;
  return view_copy(ctx, xt, {N, c, H, b, W, b}, {C * hw, s_c, W, s_bh, 1, s_bw}, {N, c, H * b, W * b});
}

// The inverse: spatial b x b blocks into channels.
PlannedOp to_depth(OpPlanContext& ctx, const char* param, bool blocks_outer) {
  const ValueType& xt = rank4(ctx);
  const int64_t b = positive(ctx, param), N = xt.shape[0], C = xt.shape[1], H = xt.shape[2], W = xt.shape[3];
  if (H % b != 0 || W % b != 0) ctx.fail("spatial size " + shape_to_string({H, W}) + " is not a multiple of the block");
  const int64_t h = H / b, w = W / b;
  // x as [N, C, h, bh, w, bw]; element strides
  const int64_t sN = C * H * W, sC = H * W, sh = b * W, sbh = W, sw = b, sbw = 1;
  Shape out{N, C * b * b, h, w};
  if (blocks_outer) return view_copy(ctx, xt, {N, b, b, C, h, w}, {sN, sbh, sbw, sC, sh, sw}, out);
  return view_copy(ctx, xt, {N, C, b, b, h, w}, {sN, sC, sbh, sbw, sh, sw}, out);
}

// [2] block shape and [2, 2] paddings / crops of the spatial axes.
void block_params(OpPlanContext& ctx, const char* pads_param, int64_t bs[2], int64_t pad[4]) {
  std::vector<int64_t> b = ctx.const_ints("block_shape"), p = ctx.const_ints(pads_param);
  if (b.size() != 2 || p.size() != 4) ctx.fail(std::string("block_shape needs 2 values and ") + pads_param + " 2 x 2");
  for (int i = 0; i < 2; ++i) {
    if (b[i] < 1 || b[i] > (int64_t{1} << 20)) ctx.fail("block_shape values must be positive");
    bs[i] = b[i];
  }
  for (int i = 0; i < 4; ++i) {
    if (p[i] < 0 || p[i] > (int64_t{1} << 30)) ctx.fail(std::string(pads_param) + " must be non-negative");
    pad[i] = p[i];
  }
}

// out[(bh * bw_n + bw) * N + n, c, i, j] = padded(x)[n, c, i * bh_n + bh, j * bw_n + bw]
PlannedOp build_space_to_batch(OpPlanContext& ctx) {
  const ValueType& xt = rank4(ctx);
  int64_t bs[2], pad[4];
  block_params(ctx, "paddings", bs, pad);
  const int64_t N = xt.shape[0], C = xt.shape[1], H = xt.shape[2], W = xt.shape[3];
  const int64_t PH = H + pad[0] + pad[1], PW = W + pad[2] + pad[3];
  if (PH % bs[0] != 0 || PW % bs[1] != 0) ctx.fail("the padded spatial size is not a multiple of block_shape");
  const int64_t h = PH / bs[0], w = PW / bs[1];
  const size_t elem = dtype_size(xt.dtype);
  int xs = ctx.input("x");
  PlannedOp op;
  op.outputs.push_back({xt.dtype, {N * bs[0] * bs[1], C, h, w}});
  op.run = [=](const KernelCall& call) {
    const auto* src = static_cast<const uint8_t*>(call.in(xs).data());
    auto* dst = static_cast<uint8_t*>(call.out(0).data());
    std::memset(dst, 0, call.out(0).nbytes());  // padded positions stay 0
    for (int64_t ob = 0; ob < N * bs[0] * bs[1]; ++ob) {
      const int64_t n = ob % N, bw = (ob / N) % bs[1], bh = ob / (N * bs[1]);
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < h; ++i)
          for (int64_t j = 0; j < w; ++j) {
            const int64_t y = i * bs[0] + bh - pad[0], x = j * bs[1] + bw - pad[2];
            if (y < 0 || y >= H || x < 0 || x >= W) continue;
            std::memcpy(dst + (((ob * C + c) * h + i) * w + j) * elem, src + (((n * C + c) * H + y) * W + x) * elem,
                        elem);
          }
    }
  };
  return op;
}

// The inverse of space_to_batch, then `crops` removed from the spatial axes.
PlannedOp build_batch_to_space(OpPlanContext& ctx) {
  const ValueType& xt = rank4(ctx);
  int64_t bs[2], crop[4];
  block_params(ctx, "crops", bs, crop);
  const int64_t B = xt.shape[0], C = xt.shape[1], h = xt.shape[2], w = xt.shape[3];
  if (B % (bs[0] * bs[1]) != 0) ctx.fail("the batch is not a multiple of the block size");
  const int64_t N = B / (bs[0] * bs[1]);
  const int64_t H = h * bs[0] - crop[0] - crop[1], W = w * bs[1] - crop[2] - crop[3];
  if (H < 0 || W < 0) ctx.fail("crops remove more than the spatial size");
  const size_t elem = dtype_size(xt.dtype);
  int xs = ctx.input("x");
  PlannedOp op;
  op.outputs.push_back({xt.dtype, {N, C, H, W}});
  op.run = [=](const KernelCall& call) {
    const auto* src = static_cast<const uint8_t*>(call.in(xs).data());
    auto* dst = static_cast<uint8_t*>(call.out(0).data());
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = 0; y < H; ++y)
          for (int64_t x = 0; x < W; ++x) {
            const int64_t py = y + crop[0], px = x + crop[2];
            const int64_t ob = ((py % bs[0]) * bs[1] + px % bs[1]) * N + n;
            std::memcpy(dst + (((n * C + c) * H + y) * W + x) * elem,
                        src + (((ob * C + c) * h + py / bs[0]) * w + px / bs[1]) * elem, elem);
          }
  };
  return op;
}

// out [.., (d - size) / stride + 1, size, ..]: window k holds elements k * stride ...
PlannedOp build_sliding_windows(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const int64_t rank = static_cast<int64_t>(xt.shape.size());
  const int64_t axis = normalize_axis(ctx, ctx.const_int("axis"), rank);
  const int64_t size = positive(ctx, "size"), stride = ctx.has("stride") ? positive(ctx, "stride") : 1;
  const int64_t d = xt.shape[axis];
  if (size > d) ctx.fail("window size " + std::to_string(size) + " exceeds the axis size " + std::to_string(d));
  const int64_t windows = (d - size) / stride + 1;
  std::vector<int64_t> xs = contiguous_strides(xt.shape), strides;
  Shape dims;
  for (int64_t a = 0; a < rank; ++a) {
    if (a == axis) {
      dims.insert(dims.end(), {windows, size});
      strides.insert(strides.end(), {stride * xs[a], xs[a]});
    } else {
      dims.push_back(xt.shape[a]);
      strides.push_back(xs[a]);
    }
  }
  return view_copy(ctx, xt, dims, strides, dims);
}

// Reverses the first lengths[b] elements along seq_axis of each slice b of batch_axis.
PlannedOp build_reverse_sequence(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const ValueType& lt = ctx.type("lengths");
  const int64_t rank = static_cast<int64_t>(xt.shape.size());
  const int64_t seq = normalize_axis(ctx, ctx.const_int_or("seq_axis", 0), rank);
  const int64_t batch = normalize_axis(ctx, ctx.const_int_or("batch_axis", 0), rank);
  if (seq == batch) ctx.fail("seq_axis and batch_axis must differ");
  if (!is_index_dtype(lt.dtype) || lt.shape != Shape{xt.shape[batch]}) {
    ctx.fail("lengths must hold one integer per index of batch_axis (" + std::to_string(xt.shape[batch]) + ")");
  }
  const std::vector<int64_t> strides = contiguous_strides(xt.shape);
  const int64_t n = shape_numel(xt.shape), seq_len = xt.shape[seq];
  const size_t elem = dtype_size(xt.dtype);
  const std::string where = "op '" + ctx.op_name() + "' (reverse_sequence)";
  int xs = ctx.input("x"), ls = ctx.input("lengths");
  PlannedOp op;
  op.outputs.push_back(xt);
  op.run = [=](const KernelCall& call) {
    const Tensor& lengths = call.in(ls);
    for (int64_t b = 0; b < lengths.numel(); ++b) {
      int64_t len = read_index(lengths, b);
      if (len < 0 || len > seq_len) {
        throw InputError(where + ": length " + std::to_string(len) + " out of range [0, " + std::to_string(seq_len) +
                         "]");
      }
    }
    const auto* src = static_cast<const uint8_t*>(call.in(xs).data());
    auto* dst = static_cast<uint8_t*>(call.out(0).data());
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = (i / strides[seq]) % seq_len, b = (i / strides[batch]) % xt.shape[batch];
      const int64_t len = read_index(lengths, b);
      const int64_t from = s < len ? i + (len - 1 - 2 * s) * strides[seq] : i;
      std::memcpy(dst + i * elem, src + from * elem, elem);
    }
  };
  return op;
}

}  // namespace

void register_rearrange_ops(OpRegistry& r) {
  r.add("reverse", build_reverse);
  r.add("reverse_sequence", build_reverse_sequence);
  r.add("depth_to_space", [](OpPlanContext& ctx) { return to_space(ctx, "block_size", true); });
  r.add("pixel_shuffle", [](OpPlanContext& ctx) { return to_space(ctx, "upscale_factor", false); });
  r.add("space_to_depth", [](OpPlanContext& ctx) { return to_depth(ctx, "block_size", true); });
  r.add("pixel_unshuffle", [](OpPlanContext& ctx) { return to_depth(ctx, "downscale_factor", false); });
  r.add("space_to_batch", build_space_to_batch);
  r.add("batch_to_space", build_batch_to_space);
  r.add("sliding_windows", build_sliding_windows);
}

}  // namespace staticllm::mil

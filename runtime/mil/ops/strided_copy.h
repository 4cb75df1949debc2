// A strided copy planned once: out[i] = x[sum(i[d] * src_strides[d])],
// with a memcpy per innermost run when it is contiguous. Transpose, tile and
// slicing all reduce to it.
#pragma once

#include <algorithm>
#include <cstring>

#include "mil/op.h"

namespace staticllm::mil {

// Copies x into out where out's element at multi-index i reads x at
// sum(i[d] * src_strides[d]); the innermost run is memcpy'd when contiguous.
struct StridedCopy {
  Shape out_shape;
  std::vector<int64_t> src_strides;
  size_t elem = 0;
  int64_t src_offset = 0;  // element offset of the first read (slices)

  // True when out is x's elements from src_offset on, in order (each axis
  // longer than 1 steps by its contiguous stride): out can view x.
  bool moves_nothing() const {
    int64_t stride = 1;
    for (size_t d = out_shape.size(); d-- > 0;) {
      if (out_shape[d] > 1 && src_strides[d] != stride) return false;
      stride *= out_shape[d];
    }
    return src_offset >= 0;
  }

  void run(const uint8_t* src, uint8_t* dst) const {
    // signed byte offsets: a negative stride (reversed slice) times an
    // unsigned size would wrap around, undefined for a pointer
    const int64_t esz = static_cast<int64_t>(elem);
    src += src_offset * esz;
    int64_t rank = static_cast<int64_t>(out_shape.size());
    if (rank == 0) {
      std::memcpy(dst, src, elem);
      return;
    }
    int64_t inner = out_shape[rank - 1];
    int64_t step = src_strides[rank - 1];
    int64_t outer = shape_numel(out_shape) / std::max<int64_t>(inner, 1);
    int64_t idx[8] = {0};
    int64_t off = 0;
    for (int64_t o = 0; o < outer; ++o) {
      uint8_t* d = dst + o * inner * esz;
      if (step == 1) {
        std::memcpy(d, src + off * esz, inner * elem);
      } else {
        for (int64_t k = 0; k < inner; ++k) std::memcpy(d + k * esz, src + (off + k * step) * esz, elem);
      }
      for (int64_t a = rank - 2; a >= 0; --a) {
        ++idx[a];
        off += src_strides[a];
        if (idx[a] < out_shape[a]) break;
        off -= src_strides[a] * out_shape[a];
        idx[a] = 0;
      }
    }
  }
};

// The op whose output is `copy` applied to parameter "x" (src_offset added).
inline PlannedOp strided_op(OpPlanContext& ctx, const ValueType& xt, StridedCopy copy) {
  if (copy.out_shape.size() > 8) ctx.fail("rank above 8 is not supported");
  copy.elem = dtype_size(xt.dtype);
  PlannedOp op;
  op.outputs.push_back({xt.dtype, copy.out_shape});
  if (copy.moves_nothing()) op.view_offset = copy.src_offset * static_cast<int64_t>(copy.elem);
  int xs = ctx.input("x");
  op.run = [xs, copy](const KernelCall& call) {
    copy.run(static_cast<const uint8_t*>(call.in(xs).data()), static_cast<uint8_t*>(call.out(0).data()));
  };
  return op;
}

}  // namespace staticllm::mil

// Object detection post-processing: non_maximum_suppression. Its outputs are
// padded to max_boxes, so their shapes are known when planning.
//
// Semantics follow the MIL spec and coremltools' reference for Core ML's op
// (ops/tests/iOS14/test_tensor_operation.py): a box's score is its best class
// score and its class that class (the first on ties); boxes scoring below
// score_threshold are dropped; the rest are taken greedily by descending
// score (equal scores by lower index), each suppressed when its IoU with an
// already selected box (of the same class under per_class_suppression)
// exceeds iou_threshold, until max_boxes are selected. When no box survives,
// Core ML still selects the best-scoring one. Padding: boxes and scores 0,
// indices -1.
#include <algorithm>
#include <numeric>

#include "mil/ops/elementwise_util.h"

namespace staticllm::mil {

namespace {

// The two forms: iOS15 has score_threshold, boxes [n, B, 4], scores [n, B, K]
// and a fourth output, the count; iOS17 drops score_threshold and the count
// and puts the boxes last: boxes [n, 4, B], scores [n, K, B].
struct NmsShape {
  int64_t batch = 0, boxes = 0, classes = 0, max_boxes = 0;
  bool boxes_last = false;  // the iOS17 layout

  // Element (b, i, c) of a [batch, n, C] tensor (iOS15) or [batch, C, n] (iOS17).
  int64_t at(int64_t b, int64_t i, int64_t c, int64_t n, int64_t cols) const {
    return boxes_last ? (b * cols + c) * n + i : (b * n + i) * cols + c;
  }
};

// Corners of a box given as (center x, center y, width, height).
struct Corners {
  double x0, y0, x1, y1;
  double area() const { return (x1 - x0) * (y1 - y0); }
};

Corners corners_of(double cx, double cy, double w, double h) {
  double xa = cx - 0.5 * w, xb = cx + 0.5 * w, ya = cy - 0.5 * h, yb = cy + 0.5 * h;
  return {std::min(xa, xb), std::min(ya, yb), std::max(xa, xb), std::max(ya, yb)};
}

// Intersection over union; 0 for an empty box (as TensorFlow's NMS, the
// reference coremltools compares Core ML with).
double iou(const Corners& a, const Corners& b) {
  if (a.area() <= 0 || b.area() <= 0) return 0;
  double w = std::max(0.0, std::min(a.x1, b.x1) - std::max(a.x0, b.x0));
  double h = std::max(0.0, std::min(a.y1, b.y1) - std::max(a.y0, b.y0));
  double inter = w * h;
  return inter / (a.area() + b.area() - inter);
}

struct NmsParams {
  NmsShape s;
  double iou_threshold = 0;
  bool has_score_threshold = false;
  double score_threshold = 0;
  bool per_class = false;
};

// Per-run working memory, carved from the kernel's scratch.
struct NmsScratch {
  Corners* box;
  double* score;
  int64_t* cls;
  int64_t* order;
  int64_t* selected;

  static size_t bytes(const NmsShape& s) {
    return static_cast<size_t>(s.boxes) * (sizeof(Corners) + sizeof(double) + 2 * sizeof(int64_t)) +
           static_cast<size_t>(s.max_boxes) * sizeof(int64_t);
  }
  NmsScratch(void* base, const NmsShape& s) {
    box = static_cast<Corners*>(base);
    score = reinterpret_cast<double*>(box + s.boxes);
    cls = reinterpret_cast<int64_t*>(score + s.boxes);
    order = cls + s.boxes;
    selected = order + s.boxes;
  }
};

// Selects the boxes of batch b into w.selected; returns how many.
int64_t select_boxes(const NmsParams& p, const Tensor& boxes, const Tensor& scores, int64_t b, NmsScratch& w) {
  const NmsShape& s = p.s;
  for (int64_t i = 0; i < s.boxes; ++i) {
    double c[4];
    for (int64_t k = 0; k < 4; ++k) c[k] = load_one(boxes.dtype(), boxes.data(), s.at(b, i, k, s.boxes, 4));
    w.box[i] = corners_of(c[0], c[1], c[2], c[3]);
    w.cls[i] = 0;
    w.score[i] = load_one(scores.dtype(), scores.data(), s.at(b, i, 0, s.boxes, s.classes));
    for (int64_t k = 1; k < s.classes; ++k) {
      double v = load_one(scores.dtype(), scores.data(), s.at(b, i, k, s.boxes, s.classes));
      if (v > w.score[i]) w.score[i] = v, w.cls[i] = k;
    }
  }
  std::iota(w.order, w.order + s.boxes, int64_t{0});
  std::stable_sort(w.order, w.order + s.boxes, [&](int64_t a, int64_t c) { return w.score[a] > w.score[c]; });
  int64_t count = 0;
  for (int64_t r = 0; r < s.boxes && count < s.max_boxes; ++r) {
    const int64_t i = w.order[r];
    if (p.has_score_threshold && w.score[i] < p.score_threshold) break;  // the rest score lower still
    bool suppressed = false;
    for (int64_t j = 0; j < count && !suppressed; ++j) {
      const int64_t k = w.selected[j];
      suppressed = (!p.per_class || w.cls[k] == w.cls[i]) && iou(w.box[i], w.box[k]) > p.iou_threshold;
    }
    if (!suppressed) w.selected[count++] = i;
  }
  if (count == 0 && s.boxes > 0) w.selected[count++] = w.order[0];
  return count;
}

// Writes batch b's selected boxes, scores and indices, padded, and the count.
void write_batch(const NmsParams& p, const KernelCall& call, int bs, int ss, int64_t b, const NmsScratch& w,
                 int64_t count) {
  const NmsShape& s = p.s;
  const Tensor& boxes = call.in(bs);
  const Tensor& scores = call.in(ss);
  Tensor& ob = call.out(0);
  Tensor& os = call.out(1);
  Tensor& oi = call.out(2);
  for (int64_t j = 0; j < s.max_boxes; ++j) {
    const bool real = j < count;
    const int64_t i = real ? w.selected[j] : 0;
    for (int64_t k = 0; k < 4; ++k) {
      double v = real ? load_one(boxes.dtype(), boxes.data(), s.at(b, i, k, s.boxes, 4)) : 0.0;
      store_one(ob.dtype(), ob.data(), s.at(b, j, k, s.max_boxes, 4), v);
    }
    for (int64_t k = 0; k < s.classes; ++k) {
      double v = real ? load_one(scores.dtype(), scores.data(), s.at(b, i, k, s.boxes, s.classes)) : 0.0;
      store_one(os.dtype(), os.data(), s.at(b, j, k, s.max_boxes, s.classes), v);
    }
    store_one(oi.dtype(), oi.data(), b * s.max_boxes + j, real ? static_cast<double>(i) : -1.0);
  }
  if (p.has_score_threshold) store_one(call.out(3).dtype(), call.out(3).data(), b, static_cast<double>(count));
}

NmsShape nms_shape(const OpPlanContext& ctx, bool boxes_last) {
  const ValueType& bt = ctx.type("boxes");
  const ValueType& st = ctx.type("scores");
  if (bt.shape.size() != 3 || st.shape.size() != 3) ctx.fail("boxes and scores must have rank 3");
  auto fp16_or_32 = [](DType t) { return t == DType::kFloat16 || t == DType::kFloat32; };
  if (!fp16_or_32(bt.dtype) || !fp16_or_32(st.dtype)) ctx.fail("boxes and scores must be fp16 or fp32");
  NmsShape s;
  s.boxes_last = boxes_last;
  s.batch = bt.shape[0];
  s.boxes = boxes_last ? bt.shape[2] : bt.shape[1];
  s.classes = boxes_last ? st.shape[1] : st.shape[2];
  const int64_t coords = boxes_last ? bt.shape[1] : bt.shape[2];
  const int64_t score_boxes = boxes_last ? st.shape[2] : st.shape[1];
  if (coords != 4) ctx.fail("boxes must hold 4 coordinates per box");
  if (st.shape[0] != s.batch || score_boxes != s.boxes) ctx.fail("scores must match boxes in batch and box count");
  if (s.classes < 1) ctx.fail("scores must have at least one class");
  s.max_boxes = ctx.const_int("max_boxes");
  if (s.max_boxes < 1) ctx.fail("max_boxes must be positive, got " + std::to_string(s.max_boxes));
  return s;
}

PlannedOp build_non_maximum_suppression(OpPlanContext& ctx) {
  NmsParams p;
  // The iOS17 form is the one without score_threshold (iOS15 requires it).
  p.has_score_threshold = ctx.has("score_threshold");
  p.s = nms_shape(ctx, !p.has_score_threshold);
  p.iou_threshold = ctx.const_float("iou_threshold");
  if (p.has_score_threshold) p.score_threshold = ctx.const_float("score_threshold");
  p.per_class = ctx.const_bool_or("per_class_suppression", false);
  const NmsShape& s = p.s;
  const int bs = ctx.input("boxes");
  const int ss = ctx.input("scores");
  PlannedOp op;
  const Shape box_out = s.boxes_last ? Shape{s.batch, 4, s.max_boxes} : Shape{s.batch, s.max_boxes, 4};
  const Shape score_out =
      s.boxes_last ? Shape{s.batch, s.classes, s.max_boxes} : Shape{s.batch, s.max_boxes, s.classes};
  op.outputs.push_back({ctx.type("boxes").dtype, box_out});
  op.outputs.push_back({ctx.type("scores").dtype, score_out});
  op.outputs.push_back({DType::kInt32, {s.batch, s.max_boxes}});
  if (p.has_score_threshold) op.outputs.push_back({DType::kInt32, {s.batch}});
  op.scratch_bytes = NmsScratch::bytes(s);
  op.run = [p, bs, ss](const KernelCall& call) {
    NmsScratch w(call.scratch, p.s);
    for (int64_t b = 0; b < p.s.batch; ++b) {
      int64_t count = select_boxes(p, call.in(bs), call.in(ss), b, w);
      write_batch(p, call, bs, ss, b, w, count);
    }
  };
  return op;
}

}  // namespace

void register_detection_ops(OpRegistry& r) { r.add("non_maximum_suppression", build_non_maximum_suppression); }

}  // namespace staticllm::mil

// Op-table entries of runtime/mil/ops/detection.cpp: non_maximum_suppression
// on hand-computed cases (boxes as center x, center y, width, height). The
// IoUs below: two 2x2 boxes whose centers are 0.5 apart overlap 1.5 x 2 = 3
// of a union of 5 (0.6); 1 apart, 2 of 6 (1/3); a 2x1 box inside a 2x2 one,
// 2 of 4 (exactly 0.5, not above a 0.5 threshold).
#include "op_table.h"

namespace staticllm::test::optable {
namespace {

// Five boxes in one class: 1 overlaps 0 by 0.6 (suppressed at 0.5), 2 is
// apart, 3 overlaps 0 by 1/3 (kept), 4 scores below the score threshold.
const std::vector<double> kOverlapBoxes = {0, 0, 2, 2, 0.5, 0, 2, 2, 3, 0, 2, 2, 1, 0, 2, 2, 10, 10, 1, 1};
const std::vector<double> kOverlapScores = {0.9, 0.8, 0.7, 0.6, 0.1};

// Three boxes in two classes: 1 (class 1) overlaps 0 (class 0) by 0.6, 2
// (class 0) overlaps 0 by 0.6 and 1 by 2.25 / 5.75.
const std::vector<double> kClassBoxes = {0, 0, 2, 2, 0.5, 0, 2, 2, 0, 0.5, 2, 2};
const std::vector<double> kClassScores = {0.9, 0.1, 0.2, 0.8, 0.7, 0.3};

Entry nms15(const std::string& what, Spec boxes, Spec scores, double iou, double score, int64_t max_boxes) {
  return op("non_maximum_suppression", what)
      .in("boxes", std::move(boxes))
      .in("scores", std::move(scores))
      .scalar("iou_threshold", iou)
      .scalar("score_threshold", score)
      .scalar_int("max_boxes", max_boxes);
}

std::vector<Entry> nms_entries() {
  return {
      nms15("overlap suppressed, threshold drops a box, padded", F({1, 5, 4}, kOverlapBoxes),
            F({1, 5, 1}, kOverlapScores), 0.5, 0.2, 4)
          .expect({F({1, 4, 4}, {0, 0, 2, 2, 3, 0, 2, 2, 1, 0, 2, 2, 0, 0, 0, 0}), F({1, 4, 1}, {0.9, 0.7, 0.6, 0}),
                   I32({1, 4}, {0, 2, 3, -1}), I32({1}, {3})}),
      nms15("max_boxes cuts the selection", F({1, 5, 4}, kOverlapBoxes), F({1, 5, 1}, kOverlapScores), 0.5, 0.2, 2)
          .expect(
              {F({1, 2, 4}, {0, 0, 2, 2, 3, 0, 2, 2}), F({1, 2, 1}, {0.9, 0.7}), I32({1, 2}, {0, 2}), I32({1}, {2})}),
      nms15("a lower iou threshold suppresses the 1/3 overlap too", F({1, 5, 4}, kOverlapBoxes),
            F({1, 5, 1}, kOverlapScores), 0.25, 0.2, 4)
          .expect({F({1, 4, 4}, {0, 0, 2, 2, 3, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0}), F({1, 4, 1}, {0.9, 0.7, 0, 0}),
                   I32({1, 4}, {0, 2, -1, -1}), I32({1}, {2})}),
      nms15("IoU equal to the threshold is kept; a score equal to the threshold is kept",
            F({1, 2, 4}, {0, 0, 2, 2, 0, 0, 2, 1}), F({1, 2, 1}, {0.75, 0.5}), 0.5, 0.5, 3)
          .expect({F({1, 3, 4}, {0, 0, 2, 2, 0, 0, 2, 1, 0, 0, 0, 0}), F({1, 3, 1}, {0.75, 0.5, 0}),
                   I32({1, 3}, {0, 1, -1}), I32({1}, {2})}),
      nms15("equal scores: the lower index first, and it suppresses the other",
            F({1, 3, 4}, {5, 5, 2, 2, 0, 0, 2, 2, 0.5, 0, 2, 2}), F({1, 3, 1}, {0.25, 0.5, 0.5}), 0.5, 0, 3)
          .expect({F({1, 3, 4}, {0, 0, 2, 2, 5, 5, 2, 2, 0, 0, 0, 0}), F({1, 3, 1}, {0.5, 0.25, 0}),
                   I32({1, 3}, {1, 0, -1}), I32({1}, {2})}),
      nms15("per class off: a box of another class is suppressed", F({1, 3, 4}, kClassBoxes),
            F({1, 3, 2}, kClassScores), 0.5, 0, 3)
          .flag("per_class_suppression", false)
          .expect({F({1, 3, 4}, {0, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0}), F({1, 3, 2}, {0.9, 0.1, 0, 0, 0, 0}),
                   I32({1, 3}, {0, -1, -1}), I32({1}, {1})}),
      nms15("per class on: only boxes of the same (best) class suppress", F({1, 3, 4}, kClassBoxes),
            F({1, 3, 2}, kClassScores), 0.5, 0, 3)
          .flag("per_class_suppression", true)
          .expect({F({1, 3, 4}, {0, 0, 2, 2, 0.5, 0, 2, 2, 0, 0, 0, 0}), F({1, 3, 2}, {0.9, 0.1, 0.2, 0.8, 0, 0}),
                   I32({1, 3}, {0, 1, -1}), I32({1}, {2})}),
      nms15("no box above the score threshold: Core ML still selects the best",
            F({2, 3, 4}, {0, 0, 1, 1, 4, 4, 1, 1, 8, 8, 1, 1, 0, 0, 1, 1, 4, 4, 1, 1, 8, 8, 1, 1}),
            F({2, 3, 1}, {0.125, 0.375, 0.25, 0.75, 0.5, 0.875}), 0.5, 0.625, 2)
          .expect({F({2, 2, 4}, {4, 4, 1, 1, 0, 0, 0, 0, 8, 8, 1, 1, 0, 0, 1, 1}),
                   F({2, 2, 1}, {0.375, 0, 0.875, 0.75}), I32({2, 2}, {1, -1, 2, 0}), I32({2}, {1, 2})}),
      // iOS17: boxes [n, 4, B] and scores [n, K, B], no score threshold and no count
      op("non_maximum_suppression", "iOS17 layout, per class, two batches")
          .in("boxes", F({2, 4, 3}, {0, 0.5, 0, 0, 0, 0.5, 2, 2, 2, 2, 2, 2, 0, 0.5, 0, 0, 0, 0.5, 2, 2, 2, 2, 2, 2}))
          .in("scores", F({2, 2, 3}, {0.9, 0.2, 0.7, 0.1, 0.8, 0.3, 0.6, 0.2, 0.7, 0.1, 0.95, 0.3}))
          .scalar("iou_threshold", 0.5)
          .scalar_int("max_boxes", 3)
          .flag("per_class_suppression", true)
          .expect({F({2, 4, 3}, {0, 0.5, 0, 0, 0, 0, 2, 2, 0, 2, 2, 0, 0.5, 0, 0, 0, 0.5, 0, 2, 2, 0, 2, 2, 0}),
                   F({2, 2, 3}, {0.9, 0.2, 0, 0.1, 0.8, 0, 0.2, 0.7, 0, 0.95, 0.3, 0}),
                   I32({2, 3}, {0, 1, -1, 1, 2, -1})}),
  };
}

[[maybe_unused]] const bool registered = add_entries(nms_entries());

}  // namespace
}  // namespace staticllm::test::optable

"""non_maximum_suppression built with coremltools' MIL builder (iOS15 and
iOS17 forms), run by the portable interpreter and compared with a numpy
version of coremltools' reference for Core ML's op. coremltools' own NMS
tests need TensorFlow and are skipped in the suite, so this is their check."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import staticllm


def _run(
    build: Any, shapes: list[tuple[int, ...]], inputs: dict[str, np.ndarray], ios: int, tmp: Path
) -> list:
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    target = {15: ct.target.iOS15, 17: ct.target.iOS17}[ios]

    @mb.program(input_specs=[mb.TensorSpec(shape=s) for s in shapes], opset_version=target)
    def prog(boxes: Any, scores: Any) -> Any:
        return build(boxes, scores)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ct.convert(
            prog,
            convert_to="mlprogram",
            minimum_deployment_target=target,
            compute_precision=ct.precision.FLOAT32,
            skip_model_load=True,
        )
    package = tmp / f"nms{ios}.mlpackage"
    model.save(str(package))
    bundle = staticllm.import_mlpackage(package, tmp / f"nms{ios}")
    out = staticllm.Runtime.load(bundle, backend="mil").method().execute(inputs)
    return [out[o.name] for o in model._spec.description.output]


def _greedy(boxes: np.ndarray, score: np.ndarray, iou_t: float, score_t: float, max_boxes: int) -> list[int]:
    """Single-class NMS as TensorFlow's (the reference's): best score first,
    equal scores by index, suppressed above iou_t."""
    cx, cy, w, h = boxes.T
    x0, x1, y0, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
    order = sorted((i for i in range(len(score)) if score[i] > score_t), key=lambda i: (-score[i], i))
    selected: list[int] = []
    for i in order:
        if len(selected) == max_boxes:
            break
        iw = np.maximum(0, np.minimum(x1[i], x1[selected]) - np.maximum(x0[i], x0[selected]))
        ih = np.maximum(0, np.minimum(y1[i], y1[selected]) - np.maximum(y0[i], y0[selected]))
        inter = iw * ih
        if not np.any(inter / (w[i] * h[i] + w[selected] * h[selected] - inter) > iou_t):
            selected.append(i)
    return selected


def _reference(
    boxes: np.ndarray, scores: np.ndarray, iou_t: float, score_t: float, max_boxes: int, per_class: bool
):
    """coremltools' reference (ops/tests/iOS14/test_tensor_operation.py):
    per class, NMS within each best class, merged by score; when nothing is
    selected, the best box; padded with 0 and index -1."""
    n, _, k = scores.shape
    out = [np.zeros((n, max_boxes, 4)), np.zeros((n, max_boxes, k)), -np.ones((n, max_boxes)), np.zeros(n)]
    for b in range(n):
        best, cls = scores[b].max(-1), scores[b].argmax(-1)
        if per_class:
            ids = []
            for c in np.unique(cls):
                members = np.flatnonzero(cls == c)
                ids += [
                    members[i] for i in _greedy(boxes[b][members], best[members], iou_t, score_t, max_boxes)
                ]
            ids.sort(key=lambda i: (-best[i], i))
        else:
            ids = _greedy(boxes[b], best, iou_t, score_t, max_boxes)
        ids = (ids or [int(np.argmax(best))])[:max_boxes]
        out[0][b, : len(ids)], out[1][b, : len(ids)] = boxes[b][ids], scores[b][ids]
        out[2][b, : len(ids)], out[3][b] = ids, len(ids)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_nms_against_reference(tmp_path: Path, seed: int) -> None:
    from coremltools.converters.mil import Builder as mb

    rng = np.random.default_rng(seed)
    n, nb, k, m = 2, int(rng.integers(5, 40)), int(rng.integers(1, 6)), int(rng.integers(1, 20))
    boxes = rng.uniform(0, 100, (n, nb, 4)).astype(np.float32)
    # distinct scores: no ties, so no dependence on the order of equal ones
    scores = rng.permutation(np.linspace(-100, 100, n * nb * k)).reshape(n, nb, k).astype(np.float32)
    iou_t, score_t = float(rng.uniform(0.01, 0.6)), float(rng.uniform(-100, 120))
    per_class = seed % 2 == 0

    got = _run(
        lambda b, s: mb.non_maximum_suppression(
            boxes=b,
            scores=s,
            iou_threshold=iou_t,
            score_threshold=score_t,
            max_boxes=m,
            per_class_suppression=per_class,
        ),
        [(n, nb, 4), (n, nb, k)],
        {"boxes": boxes, "scores": scores},
        15,
        tmp_path,
    )
    want = _reference(boxes, scores, np.float32(iou_t), np.float32(score_t), m, per_class)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)

    # iOS17: boxes last, no score threshold and no count
    got17 = _run(
        lambda b, s: mb.non_maximum_suppression(
            boxes=b, scores=s, iou_threshold=iou_t, max_boxes=m, per_class_suppression=per_class
        ),
        [(n, 4, nb), (n, k, nb)],
        {"boxes": boxes.transpose(0, 2, 1).copy(), "scores": scores.transpose(0, 2, 1).copy()},
        17,
        tmp_path,
    )
    want17 = _reference(boxes, scores, np.float32(iou_t), -np.inf, m, per_class)
    np.testing.assert_allclose(got17[0], want17[0].transpose(0, 2, 1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got17[1], want17[1].transpose(0, 2, 1), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got17[2], want17[2])

"""COCO mAP through pycocotools on small hand-reasoned cases, and against an independent AP@0.5 computation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edgeres.tasks.detect.box_geometry import box_iou
from edgeres.tasks.detect.decode import Detections
from edgeres.tasks.detect.metrics import coco_map

pytest.importorskip("pycocotools")

NAMES = ["cat", "dog", "bird"]


@dataclass(eq=False)
class Sample:
    """Duck-typed like the data layer's DetectionSample."""

    image_id: int
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray


def sample(image_id, boxes, labels, width=200, height=100):
    return Sample(image_id, width, height, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64))


def dets(boxes, scores, labels):
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), np.array(labels, np.int64)
    )


def test_perfect_predictions_score_one_and_stdout_stays_clean(capsys):
    gt = [
        sample(1, [[10, 10, 50, 60], [100, 20, 180, 90]], [0, 1]),
        sample(7, [[5, 5, 30, 30]], [0]),
        sample(3, [], []),  # an image without objects
    ]
    preds = [dets(s.boxes, [0.9] * len(s.labels), s.labels) for s in gt]
    m = coco_map(gt, preds, NAMES)
    # pycocotools averages 101 precisions of 1.0: the mean is 1 within a rounding error.
    assert m["map50"] == pytest.approx(1.0) and m["map"] == pytest.approx(1.0) and m["map75"] == pytest.approx(1.0)
    assert m["per_class_ap50"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0), "bird": None}
    assert (m["images"], m["gt_boxes"], m["detections"]) == (3, 3, 3)
    assert capsys.readouterr().out == ""


def test_one_false_positive_and_one_miss():
    # Two cats. Detections: one exact (0.9), one on empty background (0.8); the second cat is missed.
    # Ranked: TP (P 1, R 0.5), FP (P 0.5, R 0.5). COCO's 101 recall points: 0.00..0.50 -> precision 1 (51 points),
    # 0.51..1.00 -> never reached, 0. AP = 51 / 101 at every IoU threshold (the hit is exact).
    gt = [sample(1, [[10, 10, 50, 50], [120, 10, 160, 50]], [0, 0])]
    m = coco_map(gt, [dets([[10, 10, 50, 50], [60, 60, 90, 90]], [0.9, 0.8], [0, 0])], NAMES)
    assert m["map50"] == pytest.approx(51 / 101) and m["map"] == pytest.approx(51 / 101)
    assert m["per_class_ap50"]["cat"] == pytest.approx(51 / 101)


def test_false_positive_ranked_between_two_hits():
    # Ranked TP (P 1, R 0.5), FP (P 0.5, R 0.5), TP (P 2/3, R 1). Interpolated precision: 1 up to R 0.5
    # (51 points), 2/3 from 0.51 to 1.0 (50 points).
    gt = [sample(1, [[10, 10, 50, 50]], [0]), sample(2, [[120, 10, 160, 50]], [0])]
    preds = [dets([[10, 10, 50, 50], [60, 60, 90, 90]], [0.9, 0.8], [0, 0]), dets([[120, 10, 160, 50]], [0.7], [0])]
    assert coco_map(gt, preds, NAMES)["map50"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_map_averages_over_iou_thresholds():
    # One box found with IoU 0.62: a hit at 0.50, 0.55, 0.60 and a miss at 0.65 .. 0.95 -> mAP 3 / 10.
    gt = [sample(1, [[0, 0, 100, 100]], [2], width=100)]
    m = coco_map(gt, [dets([[0, 0, 100, 62]], [0.5], [2])], NAMES)
    assert m["map50"] == pytest.approx(1.0) and m["map75"] == 0.0 and m["map"] == pytest.approx(0.3)


def test_false_positives_of_a_class_without_ground_truth_cost_nothing():
    gt = [sample(1, [[10, 10, 50, 50]], [0])]
    m = coco_map(gt, [dets([[10, 10, 50, 50], [60, 10, 90, 40]], [0.9, 0.95], [0, 1])], NAMES)
    assert m["map50"] == pytest.approx(1.0)
    assert m["per_class_ap50"] == {"cat": pytest.approx(1.0), "dog": None, "bird": None}


def test_zero_detections_and_no_ground_truth():
    gt = [sample(1, [[10, 10, 50, 50]], [0]), sample(2, [], [])]
    m = coco_map(gt, [Detections.empty(), Detections.empty()], NAMES)
    assert m["map50"] == 0.0 and m["map"] == 0.0 and m["map75"] == 0.0
    assert m["per_class_ap50"]["cat"] == 0.0 and m["detections"] == 0
    # No ground truth box anywhere: mAP is undefined.
    m = coco_map([sample(2, [], [])], [dets([[1, 1, 5, 5]], [0.9], [0])], NAMES)
    assert m["map50"] is None and m["map"] is None and m["per_class_ap50"]["cat"] is None
    assert (m["gt_boxes"], m["detections"]) == (0, 1)


def test_misaligned_inputs_raise():
    gt = [sample(1, [[10, 10, 50, 50]], [0])]
    with pytest.raises(ValueError, match="2 predictions for 1 images"):
        coco_map(gt, [Detections.empty(), Detections.empty()], NAMES)
    with pytest.raises(ValueError, match="image_id values repeat"):
        coco_map(gt * 2, [Detections.empty()] * 2, NAMES)
    with pytest.raises(ValueError, match=r"label 5 .* has no class name"):
        coco_map(gt, [dets([[1, 1, 5, 5]], [0.9], [5])], NAMES)


def ap50_by_hand(gt, preds, label):
    """Independent AP@0.5 of one class: greedy matching by score (each detection takes the best-overlapping
    unmatched box), then COCO's 101-point interpolated precision."""
    records, n_gt = [], 0
    for s, d in zip(gt, preds, strict=True):
        g = s.boxes[s.labels == label]
        n_gt += len(g)
        k = d.labels == label
        matched = np.zeros(len(g), bool)
        for j in np.argsort(-d.scores[k], kind="stable"):
            iou = box_iou(d.boxes[k][j : j + 1], g)[0] if len(g) else np.zeros(0)
            iou[matched] = -1
            hit = len(g) > 0 and iou.max() >= 0.5
            if hit:
                matched[iou.argmax()] = True
            records.append((d.scores[k][j], hit))
    records.sort(key=lambda r: -r[0])
    hits = np.array([h for _, h in records], float)
    tp, fp = np.cumsum(hits), np.cumsum(1 - hits)
    recall, precision = tp / n_gt, tp / np.maximum(tp + fp, np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # interpolate: best precision at any higher recall
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))


def test_map50_matches_an_independent_computation():
    rng = np.random.default_rng(7)
    gt, preds = [], []
    for image_id in range(6):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 150, (n, 2))
        wh = rng.uniform(15, 50, (n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        labels = rng.integers(0, 2, n)
        gt.append(sample(image_id, boxes, labels, width=200, height=200))
        # Each object found with some jitter (some IoUs fall below 0.5), sometimes missed, plus random false boxes.
        found = rng.random(n) < 0.8
        jitter = boxes[found] + rng.normal(0, 3, (int(found.sum()), 4))
        m = int(rng.integers(0, 3))
        fxy = rng.uniform(0, 150, (m, 2))
        false = np.concatenate([fxy, fxy + rng.uniform(15, 50, (m, 2))], axis=1)
        all_boxes = np.concatenate([jitter, false])
        preds.append(
            dets(
                all_boxes,
                rng.uniform(0.05, 1.0, len(all_boxes)),
                np.concatenate([labels[found], rng.integers(0, 2, m)]),
            )
        )
    m = coco_map(gt, preds, ["a", "b"])
    by_hand = [ap50_by_hand(gt, preds, k) for k in range(2)]
    assert min(by_hand) > 0.1 and max(by_hand) < 0.99  # a case with real misses and false positives
    assert m["per_class_ap50"]["a"] == pytest.approx(by_hand[0], abs=1e-9)
    assert m["per_class_ap50"]["b"] == pytest.approx(by_hand[1], abs=1e-9)
    assert m["map50"] == pytest.approx(np.mean(by_hand), abs=1e-9)

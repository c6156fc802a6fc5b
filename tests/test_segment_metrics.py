"""Segmentation metrics against hand-computed confusion matrices; 255 ignored; absent classes left out of the mean."""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.tasks.segment.metrics import SegmentScorer, confusion_matrix, segmentation_metrics, tables

NAMES = ["background", "road", "car", "bus"]


def test_confusion_matrix_and_every_metric_by_hand():
    truth = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 1, 0]])
    cm = confusion_matrix(truth, pred, 4)
    # rows true, columns predicted; the 255 pixel (predicted 0) is not counted
    np.testing.assert_array_equal(cm, [[1, 1, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    m = segmentation_metrics(cm, NAMES)
    # IoU: background 1/(2+1-1), road 2/(2+4-2), car 0/(1+0-0), bus absent from truth and prediction: undefined
    assert [m["per_class"][n]["iou"] for n in NAMES] == [0.5, 0.5, 0.0, None]
    assert m["miou"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)  # bus is left out, not counted as 0 (or NaN)
    assert m["pixel_acc"] == pytest.approx(3 / 5)
    assert [m["per_class"][n]["acc"] for n in NAMES] == [0.5, 1.0, 0.0, None]
    assert m["mean_class_acc"] == pytest.approx(0.5)
    assert m["classes_scored"] == 3 and m["pixels"] == 5


def test_class_only_predicted_counts_as_zero_iou():
    cm = confusion_matrix(np.array([0, 0, 0, 1]), np.array([0, 0, 2, 1]), 3)
    m = segmentation_metrics(cm, NAMES[:3])
    assert m["per_class"]["car"]["iou"] == 0.0 and m["per_class"]["car"]["acc"] is None  # false positives only
    assert m["miou"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    assert m["mean_class_acc"] == pytest.approx((2 / 3 + 1.0) / 2)


def test_matches_torchvision_reference_formulas_on_random_maps():
    """The same numbers as torchvision's references/segmentation/utils.py ConfusionMatrix where all are defined."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, size=(3, 40, 50))
    truth[rng.random(truth.shape) < 0.05] = 255
    pred = np.where(rng.random(truth.shape) < 0.7, np.minimum(truth, 4), rng.integers(0, 5, size=truth.shape))
    k = (truth >= 0) & (truth < 5)
    h = np.bincount(5 * truth[k] + pred[k], minlength=25).reshape(5, 5).astype(float)
    iu = np.diag(h) / (h.sum(1) + h.sum(0) - np.diag(h))
    m = segmentation_metrics(confusion_matrix(truth, pred, 5), list("abcde"))
    assert m["miou"] == pytest.approx(iu.mean())
    assert m["pixel_acc"] == pytest.approx(np.diag(h).sum() / h.sum())
    assert m["mean_class_acc"] == pytest.approx((np.diag(h) / h.sum(1)).mean())


class _Masks:
    def __init__(self, masks):
        self.class_names = ["background", "road", "car"]
        self.masks = masks

    def mask(self, i):
        return self.masks[i]


def test_scorer_upsamples_logits_to_each_original_mask():
    """Logits on a 2x2 grid scored against 4x6 and 2x2 masks: the class map is made at each image's size."""
    left_road = np.zeros((3, 2, 2), np.float32)
    left_road[1, :, 0], left_road[1, :, 1] = 5.0, -5.0  # road left, background (logit 0) right: the boundary in
    # the middle after bilinear upsampling (columns 5, 5, 1.7, -1.7, -5, -5)
    truth_a = np.zeros((4, 6), np.uint8)
    truth_a[:, :3] = 1
    truth_b = np.full((2, 2), 255, np.uint8)  # all ignored
    scorer = SegmentScorer(_Masks([truth_a, truth_b]))
    scorer.add(np.stack([left_road, left_road]), [(4, 6), (2, 2)])
    m = scorer.result()
    assert m["images"] == 2 and m["pixels"] == 24
    assert m["miou"] == pytest.approx(1.0) and m["per_class"]["car"]["iou"] is None
    assert tables(m)[0][1] == ["class", "IoU", "accuracy", "true pixels"]

"""Box IoU, greedy NMS, class-wise NMS and clipping, checked against hand-computed results."""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.tasks.detect.box_geometry import batched_nms, box_area, box_iou, clip_boxes, nms


def test_box_iou_matches_hand_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array(
        [
            [5, 5, 15, 15],  # intersection 5x5 = 25, union 100 + 100 - 25 = 175
            [0, 0, 10, 10],  # identical
            [10, 0, 20, 10],  # touches along an edge: no area in common
            [2, 2, 4, 4],  # inside: 4 / 100
            [0, 0, 10, 20],  # 100 / 200
            [30, 30, 40, 40],  # far away
        ],
        np.float32,
    )
    iou = box_iou(a, b)
    assert iou.shape == (1, 6)
    np.testing.assert_allclose(iou[0], [25 / 175, 1.0, 0.0, 0.04, 0.5, 0.0], rtol=1e-12)
    np.testing.assert_allclose(box_iou(b, a)[:, 0], iou[0])  # symmetric


def test_box_iou_of_empty_sets_and_degenerate_boxes():
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    assert box_iou(np.zeros((2, 4)), np.zeros((0, 4))).shape == (2, 0)
    # Two zero-area boxes: the union is empty, the IoU is defined as 0 (no division by zero).
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]]).tolist() == [[0.0]]
    # An inverted box counts as empty.
    assert box_area([[5, 5, 0, 0], [0, 0, 2, 3]]).tolist() == [0.0, 6.0]


def test_nms_suppresses_above_threshold_and_keeps_below():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [5, 0, 15, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    # IoU(0, 1) = 90 / 110 = 0.82 > 0.5: suppressed. IoU(0, 2) = 50 / 150 = 0.33: kept; box 3 overlaps nothing.
    assert nms(boxes, scores, 0.5).tolist() == [0, 2, 3]
    # At 0.3 box 2 (IoU 0.33 with box 0) goes too.
    assert nms(boxes, scores, 0.3).tolist() == [0, 3]
    assert nms(boxes, scores, 0.5).dtype == np.int64


def test_nms_threshold_is_strict_and_suppression_is_greedy():
    # IoU exactly 0.5 is not "above" 0.5.
    pair = np.array([[0, 0, 10, 10], [0, 0, 10, 20]], np.float32)
    assert nms(pair, np.array([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert nms(pair, np.array([0.9, 0.8]), 0.49).tolist() == [0]
    # A chain: B overlaps A and C (IoU 70/130 = 0.54 each), A and C overlap little (40/160 = 0.25).
    # Greedy: A suppresses B, and C survives because only kept boxes suppress.
    chain = np.array([[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]], np.float32)
    assert nms(chain, np.array([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2]


def test_nms_orders_by_score_and_breaks_ties_by_lower_index():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 0, 30, 10], [20, 0, 30, 10]], np.float32)
    assert nms(boxes, np.array([0.5, 0.5, 0.7, 0.7]), 0.5).tolist() == [2, 0]
    assert nms(boxes, np.array([0.5, 0.5, 0.5, 0.5]), 0.5).tolist() == [0, 2]


def test_nms_on_empty_input_and_mismatched_lengths():
    keep = nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5)
    assert keep.shape == (0,) and keep.dtype == np.int64
    keep = batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), 0.5)
    assert keep.shape == (0,) and keep.dtype == np.int64
    with pytest.raises(ValueError, match="2 boxes but 3 scores"):
        nms(np.zeros((2, 4)), np.zeros(3), 0.5)


def test_batched_nms_keeps_overlapping_boxes_of_different_classes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10], [40, 40, 50, 50]], np.float32)
    scores = np.array([0.6, 0.9, 0.8, 0.7], np.float32)
    labels = np.array([0, 1, 1, 0])
    # Class 1: box 1 suppresses box 2. Class 0: boxes 0 and 3 do not overlap. Box 0 (class 0) is identical to
    # box 1 (class 1) and stays. Result ordered by score over all classes.
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [1, 3, 0]
    # Without classes the same boxes suppress each other.
    assert nms(boxes, scores, 0.5).tolist() == [1, 3]
    # Equal scores across classes: lower index first.
    assert batched_nms(boxes[:2], np.array([0.5, 0.5]), np.array([1, 0]), 0.5).tolist() == [0, 1]


def test_clip_boxes_clips_each_axis_and_returns_a_copy():
    boxes = np.array([[-5, -2, 30, 12], [3, 4, 5, 6]], np.float32)
    clipped = clip_boxes(boxes, width=20, height=10)
    assert clipped.tolist() == [[0, 0, 20, 10], [3, 4, 5, 6]]
    assert clipped.dtype == np.float32
    assert boxes[0].tolist() == [-5, -2, 30, 12]  # input untouched

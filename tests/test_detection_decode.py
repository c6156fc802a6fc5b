"""CenterNet decoding on hand-made output tensors: exact boxes, the 3x3 peak test, thresholds, limits, the mapping
back to original image sizes, and shape errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from edgeres.tasks.detect.decode import Detections, decode_centernet, peak_mask, sigmoid

LOW = -20.0  # heatmap logit of "nothing here"


def blank_output(num_classes: int, h: int, w: int, batch: int = 1) -> np.ndarray:
    out = np.zeros((batch, num_classes + 4, h, w), np.float32)
    out[:, :num_classes] = LOW
    return out


def put(out, n, c, row, col, logit, w, h, off_x=0.0, off_y=0.0):
    """One object in image n: class c peaks at (row, col); size and offset in cells."""
    num_classes = out.shape[1] - 4
    out[n, c, row, col] = logit
    out[n, num_classes:, row, col] = w, h, off_x, off_y


def test_sigmoid_is_stable_and_keeps_float32():
    x = np.array([-1000.0, -2.0, 0.0, 2.0, 1000.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning from exp
        y = sigmoid(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [0.0, 1 / (1 + math.e**2), 0.5, 1 / (1 + math.e**-2), 1.0], rtol=1e-6)


def test_peak_mask_keeps_3x3_maxima_and_plateaus():
    heat = np.array([[[1, 2, 0, 0], [0, 1, 0, 5], [0, 0, 0, 5], [3, 0, 0, 0]]], np.float32)
    assert peak_mask(heat)[0].astype(int).tolist() == [
        [0, 1, 0, 0],
        [0, 0, 0, 1],  # the two 5s tie: both kept
        [0, 0, 0, 1],
        [1, 0, 0, 0],  # a corner cell competes only with its 3 neighbours inside the map
    ]


def test_one_object_decodes_to_the_exact_box():
    out = blank_output(num_classes=2, h=8, w=8)  # input 32x32: stride 4
    put(out, 0, c=1, row=3, col=5, logit=2.0, w=2.5, h=1.5, off_x=0.25, off_y=0.75)
    (det,) = decode_centernet(out, 2, (32, 32), [(32, 32)])
    # Centre ((5 + 0.25) * 4, (3 + 0.75) * 4) = (21, 15); size (2.5 * 4, 1.5 * 4) = (10, 6).
    np.testing.assert_allclose(det.boxes, [[16, 12, 26, 18]], atol=1e-5)
    np.testing.assert_allclose(det.scores, [1 / (1 + math.exp(-2))], rtol=1e-6)
    assert det.labels.tolist() == [1] and len(det) == 1
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32 and det.labels.dtype == np.int64


def test_non_square_strides_and_mapping_to_a_different_original_size():
    out = blank_output(num_classes=1, h=4, w=8)  # input 32 high, 96 wide: stride_y 8, stride_x 12
    put(out, 0, c=0, row=1, col=2, logit=3.0, w=2.0, h=1.0, off_x=0.5, off_y=0.5)
    # Input pixels: centre (2.5 * 12, 1.5 * 8) = (30, 12), size (24, 8) -> (18, 8, 42, 16).
    (det,) = decode_centernet(out, 1, (32, 96), [(32, 96)])
    np.testing.assert_allclose(det.boxes, [[18, 8, 42, 16]], atol=1e-5)
    # The original image was 100 high and 480 wide: x * 480 / 96 = x * 5, y * 100 / 32 = y * 3.125.
    (det,) = decode_centernet(out, 1, (32, 96), [(100, 480)])
    np.testing.assert_allclose(det.boxes, [[90, 25, 210, 50]], atol=1e-4)


def test_boxes_are_clipped_to_the_original_image():
    out = blank_output(num_classes=1, h=8, w=8)
    put(out, 0, c=0, row=0, col=7, logit=3.0, w=4.0, h=4.0, off_x=0.5, off_y=0.5)
    # Input box: centre (30, 2), size 16 -> (22, -6, 38, 10); clipped to 32x32 -> (22, 0, 32, 10); image 64x64: x2.
    (det,) = decode_centernet(out, 1, (32, 32), [(64, 64)])
    np.testing.assert_allclose(det.boxes, [[44, 0, 64, 20]], atol=1e-5)


def test_only_the_3x3_maximum_of_adjacent_peaks_survives():
    out = blank_output(num_classes=2, h=8, w=8)
    put(out, 0, c=0, row=2, col=2, logit=3.0, w=1.0, h=1.0)
    put(out, 0, c=0, row=2, col=3, logit=2.0, w=1.0, h=1.0)  # right neighbour: not a local maximum
    put(out, 0, c=0, row=3, col=1, logit=2.5, w=1.0, h=1.0)  # diagonal neighbour: not a local maximum
    put(out, 0, c=0, row=2, col=5, logit=1.0, w=1.0, h=1.0)  # two cells away from (2, 3): a peak of its own
    (det,) = decode_centernet(out, 2, (32, 32), [(32, 32)], score_threshold=0.1)
    np.testing.assert_allclose(det.scores, sigmoid(np.array([3.0, 1.0], np.float32)), rtol=1e-6)
    # Offset 0: centres at (4 * col, 4 * row), 1-cell boxes 4 px wide.
    np.testing.assert_allclose(det.boxes, [[6, 6, 10, 10], [18, 6, 22, 10]], atol=1e-5)
    # The peak test is per class: the same neighbour cell in another class is a peak.
    out[0, 1, 2, 3] = 2.0
    (det,) = decode_centernet(out, 2, (32, 32), [(32, 32)], score_threshold=0.1)
    assert det.labels.tolist() == [0, 1, 0]


def test_score_threshold_is_inclusive():
    out = blank_output(num_classes=1, h=8, w=8)
    for col, logit in ((0, 2.0), (3, 0.0), (6, -2.0)):  # scores 0.88, 0.5, 0.12
        put(out, 0, c=0, row=4, col=col, logit=logit, w=1.0, h=1.0)
    assert len(decode_centernet(out, 1, (32, 32), [(32, 32)], score_threshold=0.3)[0]) == 2
    assert len(decode_centernet(out, 1, (32, 32), [(32, 32)], score_threshold=0.5)[0]) == 2
    assert len(decode_centernet(out, 1, (32, 32), [(32, 32)], score_threshold=0.51)[0]) == 1
    assert len(decode_centernet(out, 1, (32, 32), [(32, 32)], score_threshold=0.1)[0]) == 3
    empty = decode_centernet(out, 1, (32, 32), [(32, 32)], score_threshold=0.99)[0]
    assert len(empty) == 0 and empty.boxes.shape == (0, 4) and empty.labels.dtype == np.int64


def test_max_detections_and_top_k_keep_the_best():
    out = blank_output(num_classes=1, h=8, w=16)
    logits = [1.0, 4.0, 2.0, 5.0, 3.0]
    for k, logit in enumerate(logits):
        put(out, 0, c=0, row=4, col=3 * k, logit=logit, w=1.0, h=1.0)
    (det,) = decode_centernet(out, 1, (32, 64), [(32, 64)], max_detections=3)
    np.testing.assert_allclose(det.scores, sigmoid(np.array([5.0, 4.0, 3.0], np.float32)), rtol=1e-6)
    assert det.boxes[:, 0].tolist() == [34.0, 10.0, 46.0]  # columns 9, 3, 12; centre 4 * col, half width 2
    (det,) = decode_centernet(out, 1, (32, 64), [(32, 64)], top_k=2)
    assert len(det) == 2
    assert len(decode_centernet(out, 1, (32, 64), [(32, 64)], max_detections=0)[0]) == 0


def test_class_wise_nms_inside_the_decoder():
    out = blank_output(num_classes=2, h=16, w=16)  # input 64x64, stride 4
    # Two peaks two columns apart with 6-cell (24 px) boxes: x (8, 32) and (16, 40), same y. IoU = 16 / 32 = 0.5:
    # suppressed at 0.4, kept at 0.5 (only IoU above the threshold suppresses).
    put(out, 0, c=0, row=8, col=5, logit=3.0, w=6.0, h=6.0)
    put(out, 0, c=0, row=8, col=7, logit=2.0, w=6.0, h=6.0)
    (det,) = decode_centernet(out, 2, (64, 64), [(64, 64)], nms_iou=0.5)
    np.testing.assert_allclose(det.boxes, [[8, 20, 32, 44], [16, 20, 40, 44]], atol=1e-5)
    assert len(decode_centernet(out, 2, (64, 64), [(64, 64)], nms_iou=0.4)[0]) == 1
    assert len(decode_centernet(out, 2, (64, 64), [(64, 64)], nms_iou=None)[0]) == 2
    # The same overlap between two classes is not suppressed.
    out[0, 0, 8, 7], out[0, 1, 8, 7] = LOW, 2.0
    assert decode_centernet(out, 2, (64, 64), [(64, 64)], nms_iou=0.4)[0].labels.tolist() == [0, 1]


def test_batch_of_two_with_different_original_sizes():
    out = blank_output(num_classes=3, h=8, w=8, batch=2)
    put(out, 0, c=2, row=2, col=2, logit=1.0, w=2.0, h=2.0, off_x=0.5, off_y=0.5)  # input box (6, 6, 14, 14)
    put(out, 1, c=0, row=4, col=6, logit=4.0, w=1.0, h=3.0)  # input box (22, 10, 26, 22)
    put(out, 1, c=1, row=0, col=0, logit=0.5, w=1.0, h=1.0)  # input box (-2, -2, 2, 2) -> clipped
    dets = decode_centernet(out, 3, (32, 32), [(64, 32), (16, 48)])
    assert [len(d) for d in dets] == [1, 2]
    np.testing.assert_allclose(dets[0].boxes, [[6, 12, 14, 28]], atol=1e-5)  # x * 1, y * 2
    np.testing.assert_allclose(dets[1].boxes, [[33, 5, 39, 11], [0, 0, 3, 1]], atol=1e-5)  # x * 1.5, y * 0.5
    assert dets[1].labels.tolist() == [0, 1]


def test_bad_output_shape_raises_a_clear_value_error():
    out = blank_output(num_classes=3, h=8, w=8)
    with pytest.raises(ValueError, match=r"expected \[N, num_classes \+ 4 = 6, H, W\]"):
        decode_centernet(out, 2, (32, 32), [(32, 32)])
    with pytest.raises(ValueError, match="shape"):
        decode_centernet(out[0], 3, (32, 32), [(32, 32)])
    with pytest.raises(ValueError, match="2 image sizes for a batch of 1"):
        decode_centernet(out, 3, (32, 32), [(32, 32), (32, 32)])


def test_detections_empty_and_len():
    empty = Detections.empty()
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
    assert (empty.boxes.dtype, empty.scores.dtype, empty.labels.dtype) == (np.float32, np.float32, np.int64)


def test_saturated_scores_still_follow_their_logits():
    # sigmoid(30) and sigmoid(40) are both 1.0 in float32; the peak test and the ranking use the logits.
    out = blank_output(num_classes=1, h=8, w=8)
    put(out, 0, c=0, row=1, col=1, logit=30.0, w=1.0, h=1.0)
    put(out, 0, c=0, row=1, col=2, logit=40.0, w=1.0, h=1.0)  # neighbour of (1, 1): only this one is a peak
    put(out, 0, c=0, row=5, col=1, logit=35.0, w=1.0, h=1.0)
    (det,) = decode_centernet(out, 1, (32, 32), [(32, 32)])
    assert det.scores.tolist() == [1.0, 1.0]
    np.testing.assert_allclose(det.boxes[:, :2], [[6, 2], [2, 18]], atol=1e-5)  # (1, 2) first, then (5, 1)

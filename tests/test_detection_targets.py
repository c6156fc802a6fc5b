"""CenterNet targets: hand-checked Gaussians, sizes, offsets and the mask, the shared-cell rule, and an
encode -> decode round trip that must give the boxes back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeres.tasks.detect.box_geometry import box_iou
from edgeres.tasks.detect.decode import decode_centernet
from edgeres.tasks.detect.targets import encode_centernet, gaussian_2d, gaussian_radius


def test_gaussian_radius_matches_the_reference_formula_by_hand():
    # 10x10 cells, min_overlap 0.7. Case 3 is the smallest: a = 2.8, b = -28, c = -30 -> (b + sqrt(b^2 - 4ac)) / 2.
    assert gaussian_radius(10, 10) == pytest.approx((-28 + math.sqrt(28**2 + 4 * 2.8 * 30)) / 2)
    assert gaussian_radius(10, 10) == pytest.approx(2.7332, abs=1e-4)
    # Case 1 for reference: b = 20, c = 100 * 0.3 / 1.7 -> (20 + sqrt(400 - 4c)) / 2, larger.
    assert (20 + math.sqrt(400 - 4 * 30 / 1.7)) / 2 > gaussian_radius(10, 10)
    assert gaussian_radius(40, 10) > gaussian_radius(10, 10)  # grows with the box


def test_gaussian_2d_peak_and_sigma():
    g = gaussian_2d(2)  # 5x5, sigma 5 / 6
    assert g.shape == (5, 5) and g[2, 2] == 1.0
    sigma = 5 / 6
    assert g[2, 3] == pytest.approx(math.exp(-1 / (2 * sigma**2)))
    assert g[0, 0] == pytest.approx(math.exp(-8 / (2 * sigma**2)))
    np.testing.assert_array_equal(g, g.T)
    assert gaussian_2d(0).tolist() == [[1.0]]


def test_one_box_gives_a_peak_size_offset_and_mask():
    # Input 64x64, output 16x16 (stride 4). Box (10, 20, 30, 36): centre (20, 28) px = (5.0, 7.0) cells,
    # size (20, 16) px = (5, 4) cells.
    t = encode_centernet(np.array([[10, 20, 30, 36]], np.float32), np.array([1]), 3, (64, 64), (16, 16))
    assert t["heatmap"].shape == (3, 16, 16) and t["size"].shape == (2, 16, 16)
    assert t["offset"].shape == (2, 16, 16) and t["mask"].shape == (16, 16)
    assert all(v.dtype == np.float32 for v in t.values())
    heat = t["heatmap"]
    assert heat[1, 7, 5] == 1.0 and heat.max() == 1.0 and heat.min() == 0.0
    assert heat[0].max() == 0.0 and heat[2].max() == 0.0
    # radius = int(gaussian_radius(4, 5)) = 1 -> a 3x3 Gaussian with sigma 0.5.
    assert int(gaussian_radius(4, 5)) == 1
    assert heat[1, 7, 6] == pytest.approx(math.exp(-2), rel=1e-6) and heat[1, 6, 6] == pytest.approx(math.exp(-4))
    assert heat[1, 7, 7] == 0.0 and np.count_nonzero(heat) == 9
    assert t["mask"].sum() == 1.0 and t["mask"][7, 5] == 1.0
    assert t["size"][:, 7, 5].tolist() == [5.0, 4.0]
    assert t["offset"][:, 7, 5].tolist() == [0.0, 0.0]
    assert np.count_nonzero(t["size"]) == 2


def test_offsets_and_non_square_strides():
    # Input 48 high, 96 wide; output 12x16: stride_y 4, stride_x 6. Box centre (50, 19) px = (8.333, 4.75) cells.
    t = encode_centernet(np.array([[41, 16, 59, 22]], np.float32), np.array([0]), 1, (48, 96), (12, 16))
    assert t["mask"][4, 8] == 1.0 and t["heatmap"][0, 4, 8] == 1.0
    np.testing.assert_allclose(t["offset"][:, 4, 8], [50 / 6 - 8, 0.75], rtol=1e-6)
    np.testing.assert_allclose(t["size"][:, 4, 8], [3.0, 1.5], rtol=1e-6)


def test_overlapping_gaussians_take_the_elementwise_maximum():
    boxes = np.array([[8, 8, 40, 40], [20, 12, 52, 44]], np.float32)
    both = encode_centernet(boxes, np.array([0, 0]), 1, (64, 64), (16, 16))["heatmap"]
    first = encode_centernet(boxes[:1], np.array([0]), 1, (64, 64), (16, 16))["heatmap"]
    second = encode_centernet(boxes[1:], np.array([0]), 1, (64, 64), (16, 16))["heatmap"]
    assert (np.minimum(first, second) > 0).any()  # they do overlap
    np.testing.assert_array_equal(both, np.maximum(first, second))


def test_shared_centre_cell_goes_to_the_larger_box_whatever_the_order():
    small = [14, 14, 18, 18]  # centre (16, 16) px = cell (4, 4) at stride 4
    large = [4, 6, 28, 26]  # centre (16, 16) too
    for boxes, labels in (([small, large], [0, 1]), ([large, small], [1, 0])):
        t = encode_centernet(np.array(boxes, np.float32), np.array(labels), 2, (64, 64), (16, 16))
        assert t["mask"].sum() == 1.0
        assert t["size"][:, 4, 4].tolist() == [6.0, 5.0]  # the large box, in cells
        assert t["heatmap"][0, 4, 4] == 1.0 and t["heatmap"][1, 4, 4] == 1.0  # both classes peak


def test_unusable_boxes_are_skipped_and_bad_labels_raise():
    boxes = np.array([[10, 10, 10, 20], [70, 10, 90, 20], [-30, -30, -10, -10], [0, 0, 64, 64]], np.float32)
    t = encode_centernet(boxes, np.array([0, 0, 0, 0]), 1, (64, 64), (16, 16))
    # Zero width, centre right of the input, centre above-left: skipped. The full-image box is centred at cell 8.
    assert t["mask"].sum() == 1.0 and t["mask"][8, 8] == 1.0
    empty = encode_centernet(np.zeros((0, 4)), np.zeros(0, np.int64), 2, (64, 64), (16, 16))
    assert empty["heatmap"].max() == 0.0 and empty["mask"].sum() == 0.0
    with pytest.raises(ValueError, match=r"label 3 is outside \[0, 3\)"):
        encode_centernet(np.array([[0, 0, 8, 8]]), np.array([3]), 3, (64, 64), (16, 16))
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        encode_centernet(np.zeros((2, 4)), np.array([0]), 3, (64, 64), (16, 16))


def random_boxes(rng, n, num_classes, input_hw, output_hw):
    """Boxes inside the input with distinct centre cells and same-class IoU below 0.4 (so NMS keeps them)."""
    in_h, in_w = input_hw
    sx, sy = in_w / output_hw[1], in_h / output_hw[0]
    boxes, labels, cells = [], [], set()
    while len(boxes) < n:
        w, h = rng.uniform(0.1, 0.5) * in_w, rng.uniform(0.1, 0.5) * in_h
        x0, y0 = rng.uniform(0, in_w - w), rng.uniform(0, in_h - h)
        box, label = [x0, y0, x0 + w, y0 + h], int(rng.integers(num_classes))
        cell = (int((x0 + w / 2) // sx), int((y0 + h / 2) // sy))
        same = [b for b, lab in zip(boxes, labels, strict=True) if lab == label]
        if cell in cells or (same and box_iou([box], same).max() >= 0.4):
            continue
        boxes.append(box)
        labels.append(label)
        cells.add(cell)
    return np.array(boxes, np.float32), np.array(labels, np.int64)


@pytest.mark.parametrize(
    ("input_hw", "output_hw"),
    [
        ((64, 64), (16, 16)),
        ((96, 128), (24, 32)),
        ((128, 64), (32, 16)),
        ((64, 96), (8, 16)),
        ((90, 70), (30, 35)),
        ((100, 70), (24, 20)),
    ],  # the last: strides 4.17 and 3.5
)
def test_encode_then_decode_gives_the_boxes_back(input_hw, output_hw):
    rng = np.random.default_rng(1234)
    num_classes = 3
    for _ in range(3):
        boxes, labels = random_boxes(rng, 5, num_classes, input_hw, output_hw)
        t = encode_centernet(boxes, labels, num_classes, input_hw, output_hw)
        p = np.clip(t["heatmap"], 1e-4, 1 - 1e-4)
        output = np.concatenate([np.log(p / (1 - p)), t["size"], t["offset"]])[None].astype(np.float32)
        orig_hw = (input_hw[0] * 3, input_hw[1] * 2)  # the original image was larger, and not in the same ratio
        (det,) = decode_centernet(output, num_classes, input_hw, [input_hw], score_threshold=0.5)
        (big,) = decode_centernet(output, num_classes, input_hw, [orig_hw], score_threshold=0.5)
        assert len(det) == len(boxes)
        # Scores tie, so match detections to boxes by (label, x0).
        order, found = np.lexsort((boxes[:, 0], labels)), np.lexsort((det.boxes[:, 0], det.labels))
        assert det.labels[found].tolist() == labels[order].tolist()
        np.testing.assert_allclose(det.boxes[found], boxes[order], atol=1e-3)
        np.testing.assert_allclose(big.boxes[found], boxes[order] * np.float32([2, 3, 2, 3]), atol=3e-3)

"""Drawing detections: a copy changed only near the boxes, a fixed colour per class, labels kept inside the image,
and lines that grow with the image."""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.tasks.detect.decode import Detections
from edgeres.tasks.detect.draw import class_color, draw_detections

pytest.importorskip("cv2")

NAMES = ["cat", "dog"]


def dets(boxes, scores, labels):
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), np.array(labels))


def noise_image(h=300, w=400, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_only_pixels_near_the_boxes_change_and_the_input_is_untouched():
    image = noise_image()
    before = image.copy()
    detections = dets([[100, 120, 200, 220], [250, 50, 330, 90]], [0.87, 0.5], [0, 1])
    out = draw_detections(image, detections, NAMES)
    np.testing.assert_array_equal(image, before)
    assert out is not image and out.shape == image.shape and out.dtype == np.uint8

    near = np.zeros(image.shape[:2], bool)
    for x0, y0, x1, y1 in detections.boxes.astype(int):
        near[y0 - 4 : y1 + 5, x0 - 4 : x1 + 5] = True  # the box and its line width
        near[y0 - 30 : y0, x0 - 4 : x0 + 120] = True  # the label band above it
    changed = (out != image).any(axis=2)
    assert not changed[~near].any()
    # Each box is drawn: its edges changed, the inside of the box did not.
    assert changed[170, 100] and changed[120, 150] and changed[220, 150] and changed[170, 200]
    assert changed[70, 250] and not changed[170, 150]


def test_each_class_keeps_one_colour():
    image = np.zeros((300, 400, 3), np.uint8)
    three = dets([[50, 100, 120, 200], [200, 100, 300, 250], [320, 40, 380, 280]], [0.9, 0.8, 0.7], [0, 1, 0])
    out = draw_detections(image, three, NAMES)
    cat, dog = class_color(0), class_color(1)
    assert cat != dog
    assert tuple(out[150, 50]) == cat and tuple(out[150, 320]) == cat  # left edges of both cat boxes
    assert tuple(out[200, 200]) == dog
    # Same colours on every call and on another image; another seed gives another palette.
    np.testing.assert_array_equal(out, draw_detections(image, three, NAMES))
    again = draw_detections(noise_image(), dets([[10, 60, 90, 120]], [0.3], [1]), NAMES)
    assert tuple(again[90, 10]) == dog
    assert class_color(1) == dog and class_color(1, color_seed=3) != dog
    assert all(0 <= v <= 255 for v in class_color(12345))


def test_label_goes_inside_the_box_at_the_top_of_the_image():
    image = np.zeros((200, 300, 3), np.uint8)
    cat = class_color(0)
    # Room above the box: the label background sits right above the top edge.
    out = draw_detections(image, dets([[40, 80, 140, 180]], [0.5], [0]), NAMES)
    assert tuple(out[78, 41]) == cat and tuple(out[85, 60]) == (0, 0, 0)
    # Box touching the top: the label is drawn inside the box, from row 0 down.
    out = draw_detections(image, dets([[40, 0, 140, 100]], [0.5], [0]), NAMES)
    assert tuple(out[3, 41]) == cat and tuple(out[5, 41]) == cat
    assert not (out[50:99, 45:135] != 0).any()  # below the label the box is still empty
    # Box at the right edge: the label is shifted left to stay in the image, ending at the last column.
    out = draw_detections(image, dets([[280, 100, 300, 150]], [0.5], [0]), NAMES)
    cols = np.flatnonzero((out[:100] != 0).any(axis=(0, 2)))  # the label, above the box
    assert cols.min() < 270 and cols.max() == 299


def test_line_width_grows_with_the_image():
    def line_width(side):
        image = np.zeros((side, side, 3), np.uint8)
        q = side // 4
        out = draw_detections(image, dets([[q, q, 3 * q, 3 * q]], [0.9], [0]), NAMES)
        return int((out[side // 2, : side // 2] != 0).any(axis=1).sum())  # the left edge, at mid height

    assert line_width(240) < line_width(1440) < line_width(2880)


def test_no_detections_gives_an_equal_copy_and_bad_images_raise():
    image = noise_image(50, 60)
    out = draw_detections(image, Detections.empty(), NAMES)
    assert out is not image
    np.testing.assert_array_equal(out, image)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        draw_detections(image[..., 0], Detections.empty(), NAMES)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        draw_detections(image.astype(np.float32), Detections.empty(), NAMES)

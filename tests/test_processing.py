"""Pre- and post-processing in numpy, checked against small hand-made arrays and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeres.config import PreprocessConfig
from edgeres.processing import normalize, preprocess, resize_uint8
from edgeres.tasks.classify.metrics import classification_metrics
from edgeres.tasks.classify.outputs import softmax, topk


def test_softmax_matches_hand_values():
    probs = softmax(np.array([[0.0, math.log(2.0), math.log(3.0)]]))
    np.testing.assert_allclose(probs, [[1 / 6, 2 / 6, 3 / 6]], rtol=1e-12)


def test_softmax_is_stable_for_huge_logits_and_works_on_the_last_axis():
    probs = softmax(np.array([[1000.0, 1000.0], [-1000.0, 0.0]]))
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.0, 1.0]], atol=1e-300)
    batch = softmax(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    assert batch.shape == (2, 3, 4)
    np.testing.assert_allclose(batch.sum(axis=-1), np.ones((2, 3)), rtol=1e-6)
    # Shifting every logit of a row by a constant changes nothing.
    np.testing.assert_allclose(softmax(np.array([[1.0, 2.0, 5.0]]) + 7.0), softmax(np.array([[1.0, 2.0, 5.0]])))


def test_topk_orders_largest_first_and_breaks_ties_by_lower_index():
    probs = np.array([[0.1, 0.5, 0.5, 0.2], [0.4, 0.3, 0.2, 0.1]])
    idx, vals = topk(probs, 2)
    assert idx.tolist() == [[1, 2], [0, 1]]
    assert vals.tolist() == [[0.5, 0.5], [0.4, 0.3]]
    idx, vals = topk(probs, 10)  # k larger than the class count: every class, sorted
    assert idx.tolist() == [[1, 2, 3, 0], [0, 1, 2, 3]]
    assert vals.shape == (2, 4)


def test_preprocess_equals_a_hand_computation():
    # A 2x3 BGR image (as OpenCV decodes it); the network wants RGB, (x/255 - mean) / std, NCHW.
    bgr = np.array(
        [[[255, 0, 51], [0, 0, 0], [10, 20, 30]], [[255, 255, 255], [128, 64, 32], [1, 2, 3]]], dtype=np.uint8
    )
    cfg = PreprocessConfig(input_size=(2, 3), mean=(0.5, 0.25, 0.125), std=(0.5, 0.25, 0.2))
    out = preprocess([bgr], cfg)
    assert out.shape == (1, 3, 2, 3) and out.dtype == np.float32 and out.flags.c_contiguous
    # Pixel (0, 0) is B=255, G=0, R=51: R -> (0.2 - 0.5) / 0.5, G -> (0 - 0.25) / 0.25, B -> (1 - 0.125) / 0.2.
    np.testing.assert_allclose(out[0, :, 0, 0], [-0.6, -1.0, 4.375], rtol=1e-6)
    for y in range(2):
        for x in range(3):
            b, g, r = (float(v) for v in bgr[y, x])
            expected = [(r / 255 - 0.5) / 0.5, (g / 255 - 0.25) / 0.25, (b / 255 - 0.125) / 0.2]
            np.testing.assert_allclose(out[0, :, y, x], expected, rtol=1e-5, atol=1e-6)


def test_preprocess_resizes_to_height_by_width():
    cfg = PreprocessConfig(input_size=(5, 7))
    flat = np.zeros((40, 30, 3), np.uint8)
    flat[...] = (30, 60, 90)  # BGR
    out = preprocess([flat, flat[:13, :17]], cfg)
    assert out.shape == (2, 3, 5, 7)
    # A flat image stays flat through resizing; channel 0 is red (90).
    np.testing.assert_allclose(out[:, 0], (90 / 255 - cfg.mean[0]) / cfg.std[0], rtol=1e-5)
    np.testing.assert_allclose(out[:, 2], (30 / 255 - cfg.mean[2]) / cfg.std[2], rtol=1e-5)
    assert resize_uint8(flat, cfg).shape == (5, 7, 3)
    assert resize_uint8(flat, PreprocessConfig(input_size=(40, 30))) is flat  # already the right size: no copy


def test_normalize_of_rgb_input_does_not_swap_channels():
    cfg = PreprocessConfig(input_size=(1, 1), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    pixel = np.array([[[[255, 0, 0]]]], np.uint8)  # NHWC
    np.testing.assert_allclose(normalize(pixel, cfg, bgr_input=False)[0, :, 0, 0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(normalize(pixel, cfg, bgr_input=True)[0, :, 0, 0], [0.0, 0.0, 1.0])


def test_preprocess_for_a_self_normalizing_network_is_rgb_uint8_nhwc():
    cfg = PreprocessConfig(input_size=(2, 2), normalize_in_network=True)
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 7  # blue
    out = preprocess([bgr], cfg)
    assert out.shape == (1, 2, 2, 3) and out.dtype == np.uint8
    assert out[0, 0, 0].tolist() == [0, 0, 7]


def test_classification_metrics_on_hand_made_logits():
    labels = np.array([0, 0, 1, 2])
    logits = np.array(
        [
            [3.0, 1.0, 0.0],  # 0 -> 0
            [1.0, 3.0, 0.0],  # 0 -> 1
            [0.0, 2.0, 1.0],  # 1 -> 1
            [2.0, 1.0, 0.0],  # 2 -> 0 (and 2 is its last choice)
        ]
    )
    m = classification_metrics(labels, logits, ["a", "b", "c"])
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert m["top1"] == pytest.approx(50.0)
    assert m["top5_k"] == 3 and m["top5"] == pytest.approx(100.0)
    assert m["per_class"] == {
        "a": {"images": 2, "top1": pytest.approx(50.0)},
        "b": {"images": 1, "top1": pytest.approx(100.0)},
        "c": {"images": 1, "top1": pytest.approx(0.0)},
    }


def test_classification_metrics_top5_misses_a_sixth_place_label_and_handles_empty_classes():
    logits = np.array([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    m = classification_metrics(np.array([5, 5]), logits, list("abcdef"))
    assert m["top5_k"] == 5
    assert m["top1"] == pytest.approx(50.0) and m["top5"] == pytest.approx(50.0)
    assert m["per_class"]["a"] == {"images": 0, "top1": None}

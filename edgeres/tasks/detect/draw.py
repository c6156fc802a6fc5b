"""Detections drawn on a copy of a BGR image: a box per detection and a "name 0.87" label above it.

Each class keeps one colour (hues spaced by the golden ratio, so neighbouring class indices look different), and
line and text sizes follow the image's shorter side so a 320x240 frame and a 4K photo both stay readable.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import numpy as np

from edgeres.errors import require
from edgeres.tasks.detect.decode import Detections

_GOLDEN = (math.sqrt(5) - 1) / 2  # hue step between consecutive classes
# Hue rotation per color_seed. Incommensurate with _GOLDEN, so no seed's palette is another's shifted by whole classes.
_SEED_STEP = math.sqrt(2) - 1
_FONT_SCALE_AT_720 = 0.6


def class_color(label: int, color_seed: int = 0) -> tuple[int, int, int]:
    """The BGR colour of a class: the same for the same (label, color_seed), on every call and machine."""
    hue = (int(label) * _GOLDEN + int(color_seed) * _SEED_STEP) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return round(b * 255), round(g * 255), round(r * 255)


def _text_color(bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    b, g, r = bgr
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def draw_detections(
    image_bgr: np.ndarray, detections: Detections, class_names: Sequence[str], color_seed: int = 0
) -> np.ndarray:
    """A copy of the image with every detection drawn on it; the input is not modified.

    The label sits on a filled background just above its box, or just inside the box's top when there is no room
    above, and is shifted left when it would leave the image on the right.

    Args:
        image_bgr: HxWx3 uint8 image.
        detections: boxes in this image's pixels (``Detections`` of ``decode_centernet``).
        class_names: names indexed by label; a label without a name is shown as its number.
        color_seed: picks another palette (the colour of each class is still fixed for a given seed).

    Returns:
        The drawn copy, same shape and dtype.

    Raises:
        ValueError: the image is not HxWx3 uint8.
    """
    cv2 = require("cv2", "desktop")
    image_bgr = np.asarray(image_bgr)
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(
            f"draw_detections needs an HxWx3 uint8 BGR image; got shape {image_bgr.shape}, dtype {image_bgr.dtype}"
        )
    out = image_bgr.copy()
    height, width = out.shape[:2]
    scale = max(0.5, min(height, width) / 720)
    thick = max(1, round(2 * scale))
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, _FONT_SCALE_AT_720 * scale
    pad = max(2, thick)
    for box, score, label in zip(detections.boxes, detections.scores, detections.labels, strict=True):
        color = class_color(label, color_seed)
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        x0, x1 = min(max(x0, 0), width - 1), min(max(x1, 0), width - 1)
        y0, y1 = min(max(y0, 0), height - 1), min(max(y1, 0), height - 1)
        cv2.rectangle(out, (x0, y0), (x1, y1), color, thick, cv2.LINE_8)  # axis-aligned: crisp, exact colour

        name = class_names[label] if 0 <= label < len(class_names) else str(int(label))
        text = f"{name} {float(score):.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, thick)
        label_w, label_h = text_w + 2 * pad, text_h + baseline + 2 * pad
        top = y0 - label_h if y0 - label_h >= 0 else y0  # above the box, or inside it at the image's top
        left = max(0, min(x0, width - label_w))
        cv2.rectangle(out, (left, top), (left + label_w - 1, top + label_h - 1), color, -1)
        cv2.putText(
            out, text, (left + pad, top + pad + text_h), font, font_scale, _text_color(color), thick, cv2.LINE_AA
        )
    return out

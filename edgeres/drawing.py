"""Text panels drawn on BGR frames with plain OpenCV, in place; sizes follow the frame height so a 320x240
test video and a 1080p camera both stay readable. Shared by the tasks' drawing and the camera's HUD."""

from __future__ import annotations

import numpy as np

from edgeres.errors import require

WHITE, BLACK, GREEN = (255, 255, 255), (0, 0, 0), (80, 220, 80)


def text_scale(image: np.ndarray) -> float:
    return max(0.45, image.shape[0] / 720.0)


def draw_panel(image: np.ndarray, lines: list[tuple[str, tuple[int, int, int]]], corner: str) -> None:
    """Text lines on a half-transparent dark box in one corner ("tl", "tr", "bl").

    Args:
        image: BGR uint8 frame, drawn on in place.
        lines: (text, BGR colour) pairs, top to bottom.
        corner: where the box goes.
    """
    cv2 = require("cv2", "desktop")
    if not lines:
        return
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.8 * text_scale(image)
    thick = max(1, round(2 * text_scale(image)))
    sizes = [cv2.getTextSize(text, font, scale, thick)[0] for text, _ in lines]
    line_h = max(h for _, h in sizes) + max(4, round(10 * text_scale(image)))
    pad = max(4, round(8 * text_scale(image)))
    box_w, box_h = max(w for w, _ in sizes) + 2 * pad, line_h * len(lines) + pad
    ih, iw = image.shape[:2]
    x0 = pad if corner in ("tl", "bl") else max(0, iw - box_w - pad)
    y0 = pad if corner in ("tl", "tr") else max(0, ih - box_h - pad)
    x1, y1 = min(iw, x0 + box_w), min(ih, y0 + box_h)
    region = image[y0:y1, x0:x1]
    region[...] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken to 40%: text stays readable
    for i, (text, color) in enumerate(lines):
        cv2.putText(image, text, (x0 + pad, y0 + (i + 1) * line_h - pad // 2), font, scale, color, thick, cv2.LINE_AA)

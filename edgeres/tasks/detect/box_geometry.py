"""Axis-aligned boxes as ``(n, 4)`` arrays of ``x0, y0, x1, y1`` in continuous pixel coordinates.

A box covers ``[x0, x1) x [y0, y1)``: its area is ``(x1 - x0) * (y1 - y0)`` (no "+1" pixel convention), so a box
``(0, 0, 10, 10)`` has area 100. Boxes with ``x1 < x0`` or ``y1 < y0`` count as empty.
"""

from __future__ import annotations

import numpy as np


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of ``(n, 4)`` boxes; empty (inverted) boxes have area 0."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union.

    Args:
        a: ``(n, 4)`` boxes.
        b: ``(m, 4)`` boxes.

    Returns:
        ``(n, m)`` float64 IoUs; 0 where the union is empty (two empty boxes).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    iou = np.zeros_like(inter)
    np.divide(inter, union, out=iou, where=union > 0)
    return iou


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    The highest-scoring box is kept and every remaining box whose IoU with it is strictly greater than
    ``iou_threshold`` is dropped; repeat on what is left. Equal scores are visited lower index first.

    Args:
        boxes: ``(n, 4)`` boxes.
        scores: ``(n,)`` scores.
        iou_threshold: overlap above which the lower-scoring box is suppressed.

    Returns:
        int64 indices of the kept boxes, highest score first.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"nms got {len(boxes)} boxes but {len(scores)} scores; expected one score per box")
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[box_iou(boxes[best], boxes[rest])[0] <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-wise NMS: boxes only suppress boxes with the same label.

    One ``nms`` per label (a loop over the labels present, not a coordinate-offset trick, so large coordinates
    lose no precision).

    Returns:
        int64 indices of the kept boxes, highest score first (equal scores: lower index first).
    """
    scores = np.asarray(scores).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(scores):
        raise ValueError(f"batched_nms got {len(scores)} scores but {len(labels)} labels; expected one label per box")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    kept = [
        np.flatnonzero(labels == c)[nms(boxes[labels == c], scores[labels == c], iou_threshold)]
        for c in np.unique(labels)
    ]
    keep = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    keep.sort()  # index order first, so the stable sort below breaks score ties by lower index
    return keep[np.argsort(-scores[keep], kind="stable")].astype(np.int64)


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Boxes clipped to an image: x to ``[0, width]``, y to ``[0, height]``. Returns a new array, same dtype."""
    boxes = np.asarray(boxes)
    out = boxes.copy()
    out[..., 0::2] = np.clip(boxes[..., 0::2], 0, width)
    out[..., 1::2] = np.clip(boxes[..., 1::2], 0, height)
    return out

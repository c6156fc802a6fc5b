"""CenterNet decoding ("Objects as Points", Zhou et al. 2019) in numpy: network output -> boxes per image.

The network's single output is ``[N, C + 4, H, W]`` float32 at output stride ``input / output`` per axis:

* channels ``0 .. C-1``: class heatmap logits;
* channels ``C, C+1``: box width and height in output cells;
* channels ``C+2, C+3``: the centre's sub-cell offset x, y in cells. An object whose peak is at row ``i``,
  column ``j`` has its centre at ``((j + off_x) * stride_x, (i + off_y) * stride_y)`` input pixels.

Images were plain-resized (no letterbox) to the network input, so boxes map back to the original image with one
factor per axis. ``targets.encode_centernet`` is the exact inverse, for training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeres.tasks.detect.box_geometry import batched_nms, clip_boxes

EXTRA_CHANNELS = 4  # width, height, offset x, offset y after the class heatmaps


@dataclass
class Detections:
    """The detections of one image.

    Attributes:
        boxes: ``(n, 4)`` float32 ``x0, y0, x1, y1`` in original image pixels, clipped to the image.
        scores: ``(n,)`` float32 in [0, 1], descending.
        labels: ``(n,)`` int64 class indices.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        """No detections, with the right shapes and dtypes."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow: ``exp`` is only taken of non-positive numbers.

    Float inputs keep their dtype; anything else is computed in float64.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    e = np.exp(-np.abs(x))  # in (0, 1]
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def peak_mask(heat: np.ndarray) -> np.ndarray:
    """True where a cell equals the maximum of its 3x3 neighbourhood (the last two axes), as CenterNet's
    3x3 max-pool test. A plateau of equal values keeps all its cells; cells outside the map never win."""
    pad = [(0, 0)] * (heat.ndim - 2) + [(1, 1), (1, 1)]
    padded = np.pad(heat, pad, mode="constant", constant_values=-np.inf)
    h, w = heat.shape[-2:]
    neighbourhood_max = heat.copy()
    for dy in range(3):
        for dx in range(3):
            np.maximum(neighbourhood_max, padded[..., dy : dy + h, dx : dx + w], out=neighbourhood_max)
    return heat == neighbourhood_max


def decode_centernet(
    output: np.ndarray,
    num_classes: int,
    input_hw: tuple[int, int],
    image_hws: Sequence[tuple[int, int]],
    score_threshold: float = 0.3,
    nms_iou: float | None = 0.5,
    max_detections: int = 100,
    top_k: int = 100,
) -> list[Detections]:
    """Boxes, scores and labels for each image of a batch.

    Steps per image: sigmoid of the heatmap logits; keep the 3x3 local maxima; the ``top_k`` of them over all
    classes and cells; drop scores below ``score_threshold``; boxes from size and offset, in input pixels; scaled
    to the original image and clipped to it; class-wise NMS; at most ``max_detections``.

    Args:
        output: ``[N, num_classes + 4, H, W]`` network output (see the module docstring).
        num_classes: C, the number of heatmap channels.
        input_hw: the network input (height, width) in pixels; stride per axis is input / output size.
        image_hws: the original (height, width) of each of the N images.
        score_threshold: a candidate is kept when its score is >= this.
        nms_iou: class-wise NMS IoU threshold; None skips NMS (the paper relies on the peak test alone).
        max_detections: most detections returned per image.
        top_k: candidates taken from the heatmap per image, before thresholding and NMS.

    Returns:
        One ``Detections`` per image, scores descending (ranked by logit; equal logits in class, row, column
        order).

    Raises:
        ValueError: the output shape does not match ``num_classes``, or ``image_hws`` does not have N entries.
    """
    output = np.asarray(output)
    expected = num_classes + EXTRA_CHANNELS
    if output.ndim != 4 or output.shape[1] != expected:
        raise ValueError(
            f"CenterNet output has shape {tuple(output.shape)}; expected [N, num_classes + 4 = {expected}, H, W] "
            f"({num_classes} class heatmaps, then width, height, offset x, offset y)"
        )
    if len(image_hws) != output.shape[0]:
        raise ValueError(f"got {len(image_hws)} image sizes for a batch of {output.shape[0]}; expected one per image")
    if top_k < 1 or max_detections < 0:
        raise ValueError(
            f"top_k must be >= 1 and max_detections >= 0; got top_k={top_k}, max_detections={max_detections}"
        )
    limits = {"score_threshold": score_threshold, "nms_iou": nms_iou, "max_detections": max_detections, "top_k": top_k}
    return [_decode_one(out, num_classes, input_hw, hw, **limits) for out, hw in zip(output, image_hws, strict=True)]


def _decode_one(out, num_classes, input_hw, image_hw, *, score_threshold, nms_iou, max_detections, top_k):
    """``decode_centernet`` for one ``[C + 4, H, W]`` output."""
    logits = out[:num_classes]
    # The peak test runs on the logits: sigmoid is monotonic, and float32 sigmoids of large logits saturate to
    # 1.0, which would turn a clear maximum into a tie.
    scores = sigmoid(logits)
    candidates = peak_mask(logits) & (scores >= score_threshold)
    flat = np.flatnonzero(candidates)  # ascending (class, row, column) order, so ties stay in that order
    # Ranked by logit for the same reason (equal float32 scores still follow their logits).
    flat = flat[np.argsort(-logits.reshape(-1)[flat], kind="stable")][:top_k]
    label, row, col = np.unravel_index(flat, logits.shape)
    score = scores[label, row, col].astype(np.float32)

    stride_x, stride_y = input_hw[1] / out.shape[2], input_hw[0] / out.shape[1]
    # Negative sizes (an untrained head) are treated as 0, so a box is never inverted.
    half_w = 0.5 * np.clip(out[num_classes, row, col].astype(np.float64), 0, None) * stride_x
    half_h = 0.5 * np.clip(out[num_classes + 1, row, col].astype(np.float64), 0, None) * stride_y
    cx = (col + out[num_classes + 2, row, col].astype(np.float64)) * stride_x
    cy = (row + out[num_classes + 3, row, col].astype(np.float64)) * stride_y
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)

    image_h, image_w = image_hw
    boxes *= np.array([image_w / input_hw[1], image_h / input_hw[0]] * 2)
    boxes = clip_boxes(boxes, image_w, image_h)

    keep = batched_nms(boxes, score, label, nms_iou) if nms_iou is not None else np.arange(len(score))
    keep = keep[:max_detections]
    return Detections(boxes[keep].astype(np.float32), score[keep], label[keep].astype(np.int64))

"""CenterNet training targets in numpy: boxes in input pixels -> heatmaps, sizes, offsets and a mask.

The exact inverse of ``decode.decode_centernet``: decoding the targets (heatmap as logits) gives the boxes back.
The Gaussian peaks follow the reference implementation of "Objects as Points" (Zhou et al. 2019):
``gaussian_radius`` with ``min_overlap=0.7`` on the box size in output cells, truncated to an integer radius,
a ``(2r + 1)``-cell square Gaussian with ``sigma = (2r + 1) / 6`` centred on the peak cell, and the element-wise
maximum where two Gaussians of one class overlap.
"""

from __future__ import annotations

import math

import numpy as np

from edgeres.tasks.detect.box_geometry import box_area


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """Peak radius (in cells) for a box of ``height x width`` cells, exactly as CenterNet/CornerNet compute it.

    The three cases are a corner moved inside, outside, or one in and one out while the box keeps IoU
    ``min_overlap`` with the original. The reference code divides each quadratic's root by 2 instead of ``2a``
    (a known slip); it is kept here because the published models were trained with these radii.
    """
    a1 = 1
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2

    a2 = 4
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2

    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def gaussian_2d(radius: int) -> np.ndarray:
    """A ``(2r + 1, 2r + 1)`` Gaussian with peak 1 at the centre and ``sigma = (2r + 1) / 6``; values below
    float64 eps times the peak are set to 0 (as in the reference code)."""
    diameter = 2 * radius + 1
    sigma = diameter / 6
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    return g


def draw_gaussian(heatmap: np.ndarray, center_xy: tuple[int, int], radius: int) -> None:
    """Element-wise maximum of ``heatmap`` (H, W) and a Gaussian at cell ``(x, y)``, cut at the map's edges.
    In place."""
    g = gaussian_2d(radius)
    x, y = center_xy
    h, w = heatmap.shape
    left, right = min(x, radius), min(w - x, radius + 1)
    top, bottom = min(y, radius), min(h - y, radius + 1)
    region = heatmap[y - top : y + bottom, x - left : x + right]
    np.maximum(region, g[radius - top : radius + bottom, radius - left : radius + right], out=region)


def encode_centernet(
    boxes: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    input_hw: tuple[int, int],
    output_hw: tuple[int, int],
) -> dict[str, np.ndarray]:
    """Training targets for one image.

    Boxes with no area, or whose centre lies outside the input (they have no cell), are skipped.

    When two objects share a centre cell, both get their peak in the heatmap, but the cell's one size/offset slot
    goes to the larger box (equal areas: the first one given). The rule does not depend on annotation order, and
    within one cell (a few pixels) the smaller box is most often a part or duplicate of the larger one.

    Args:
        boxes: ``(n, 4)`` ``x0, y0, x1, y1`` in network-input pixels.
        labels: ``(n,)`` class indices in ``[0, num_classes)``.
        num_classes: C.
        input_hw: network input (height, width) in pixels.
        output_hw: network output (height, width) in cells; stride per axis is input / output.

    Returns:
        ``heatmap`` (C, H, W) float32 in [0, 1], exactly 1 at object centres; ``size`` (2, H, W) float32 width and
        height in cells; ``offset`` (2, H, W) float32 centre offset x, y in cells; ``mask`` (H, W) float32, 1 where
        ``size`` and ``offset`` hold an object (the regression losses use only those cells).

    Raises:
        ValueError: boxes and labels do not match, or a label is outside ``[0, num_classes)``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(boxes) != len(labels):
        raise ValueError(f"got {len(boxes)} boxes but {len(labels)} labels; expected one label per box")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(f"label {int(bad[0])} is outside [0, {num_classes}) for num_classes={num_classes}")
    out_h, out_w = output_hw
    stride_x, stride_y = input_hw[1] / out_w, input_hw[0] / out_h

    heatmap = np.zeros((num_classes, out_h, out_w), np.float32)
    size = np.zeros((2, out_h, out_w), np.float32)
    offset = np.zeros((2, out_h, out_w), np.float32)
    mask = np.zeros((out_h, out_w), np.float32)

    cells = boxes / np.array([stride_x, stride_y, stride_x, stride_y])
    width, height = cells[:, 2] - cells[:, 0], cells[:, 3] - cells[:, 1]
    cx, cy = (cells[:, 0] + cells[:, 2]) / 2, (cells[:, 1] + cells[:, 3]) / 2
    # A centre exactly on the right/bottom edge belongs to the last cell (offset 1.0, still decoded exactly).
    col = np.minimum(np.floor(cx), out_w - 1).astype(np.int64)
    row = np.minimum(np.floor(cy), out_h - 1).astype(np.int64)
    usable = (width > 0) & (height > 0) & (cx >= 0) & (cx <= out_w) & (cy >= 0) & (cy <= out_h)

    for k in np.argsort(-box_area(boxes), kind="stable"):  # largest first: it claims a shared cell
        if not usable[k]:
            continue
        radius = max(0, int(gaussian_radius(math.ceil(height[k]), math.ceil(width[k]))))
        draw_gaussian(heatmap[labels[k]], (int(col[k]), int(row[k])), radius)
        if mask[row[k], col[k]]:
            continue
        mask[row[k], col[k]] = 1.0
        size[:, row[k], col[k]] = width[k], height[k]
        offset[:, row[k], col[k]] = cx[k] - col[k], cy[k] - row[k]
    return {"heatmap": heatmap, "size": size, "offset": offset, "mask": mask}

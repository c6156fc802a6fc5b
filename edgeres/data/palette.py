"""Pascal VOC's colour palette, the palette of VOC's mask PNGs (and of every mask and overlay edgeres writes)."""

from __future__ import annotations

import numpy as np


def voc_palette(n: int = 256) -> np.ndarray:
    """Class i's RGB from the bits of i, as VOC's devkit makes it (background black, 255 VOC's void colour).

    Returns:
        (n, 3) uint8.
    """
    palette = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[i] = (r, g, b)
    return palette

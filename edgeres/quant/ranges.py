"""Choosing a symmetric int8 range (amax) from a histogram of |x|: min-max, percentile, entropy, MSE.

Histograms have ``BINS`` equal bins over [0, absmax]. Scale = amax / 127 (TensorRT's symmetric int8).
"""

from __future__ import annotations

import numpy as np

from edgeres.errors import EdgeresError

METHODS = ("entropy", "minmax", "percentile", "mse")
BINS = 2048
QMAX = 127


def amax_from_histogram(hist: np.ndarray, edges: np.ndarray, method: str, percentile: float = 99.99) -> float:
    """The clipping value for one tensor.

    Args:
        hist: counts of |x| in ``len(edges) - 1`` equal bins.
        edges: bin edges, ``edges[0] == 0``.
        method: "minmax", "percentile", "entropy" (TensorRT's KL-divergence search) or "mse".
        percentile: for "percentile", the share of values (in %) that must lie inside the range.
    """
    if method not in METHODS:
        raise EdgeresError(f"unknown calibration method '{method}'; accepted: {', '.join(METHODS)}")
    hist = np.asarray(hist, dtype=np.float64)
    total = hist.sum()
    nonzero = np.flatnonzero(hist)
    if total == 0 or len(nonzero) == 0:
        return float(edges[-1]) if edges[-1] > 0 else 1.0
    top = float(edges[nonzero[-1] + 1])
    if method == "minmax":
        return top
    if method == "percentile":
        if not 0.0 < percentile <= 100.0:
            raise EdgeresError(f"--percentile {percentile} is not in (0, 100]")
        cdf = np.cumsum(hist) / total
        idx = int(np.searchsorted(cdf, percentile / 100.0))
        return float(edges[min(idx + 1, len(edges) - 1)])
    if method == "entropy":
        return _entropy_amax(hist, edges)
    return _mse_amax(hist, edges)


def _entropy_amax(hist: np.ndarray, edges: np.ndarray, levels: int = QMAX + 1) -> float:
    """TensorRT's entropy calibration: the threshold whose 128-level quantized distribution has the
    smallest KL divergence from the clipped reference distribution."""
    # ReLU outputs put half their mass in the zero bin; merged into a 128-level group, that spike makes every wide
    # range look bad and the search clips to a sliver of the real range. Like NVIDIA's pytorch-quantization, give
    # the zero bin its neighbour's count: zeros are exact in int8 at any scale.
    hist = hist.copy()
    if len(hist) > 1:
        hist[0] = hist[1]
    n = len(hist)
    best_kl, best_i = np.inf, n
    stride = max(1, (n - levels) // 512)
    k = np.arange(levels)
    for i in range(levels, n + 1, stride):
        ref = hist[:i].copy()
        ref[i - 1] += hist[i:].sum()  # outliers clipped into the last bin
        # Merge the first i bins into `levels` groups (as np.array_split does), then spread each group's
        # mass evenly over its non-empty bins: the distribution int8 can represent.
        src = hist[:i]
        starts = k * (i // levels) + np.minimum(k, i % levels)
        sizes = np.diff(np.append(starts, i))
        mass = np.add.reduceat(src, starts)
        filled = np.add.reduceat((src > 0).astype(np.float64), starts)
        per_bin = np.repeat(mass / np.maximum(filled, 1), sizes)
        q = np.where(src > 0, per_bin, 0.0)
        if q.sum() == 0:
            continue
        p = ref / ref.sum()
        q = q / q.sum()
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(edges[best_i])


def _mse_amax(hist: np.ndarray, edges: np.ndarray, candidates: int = 256) -> float:
    """The threshold minimizing the expected squared quantization error over the histogram."""
    centers = (edges[:-1] + edges[1:]) / 2
    top = float(edges[int(np.flatnonzero(hist)[-1]) + 1])
    best, best_err = top, np.inf
    for amax in np.linspace(top / candidates, top, candidates):
        step = amax / QMAX
        q = np.clip(np.round(centers / step), 0, QMAX) * step
        err = float(np.sum(hist * (centers - q) ** 2))
        if err < best_err:
            best, best_err = float(amax), err
    return best


def weight_amax(weight: np.ndarray, axis: int, method: str) -> np.ndarray:
    """Per-output-channel amax of a weight: the channel's absmax, or its MSE-optimal clip for "mse"."""
    w = np.moveaxis(np.asarray(weight, dtype=np.float32), axis, 0).reshape(weight.shape[axis], -1)
    absmax = np.abs(w).max(axis=1)
    if method != "mse":
        return np.maximum(absmax, 1e-12)
    out = np.empty_like(absmax)
    for c, row in enumerate(np.abs(w)):
        best, best_err = absmax[c], np.inf
        for amax in np.linspace(absmax[c] * 0.5, absmax[c], 64):
            step = max(amax, 1e-12) / QMAX
            err = float(np.sum((row - np.clip(np.round(row / step), 0, QMAX) * step) ** 2))
            if err < best_err:
                best, best_err = amax, err
        out[c] = best
    return np.maximum(out, 1e-12)

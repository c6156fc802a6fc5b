"""Calibration: activation histograms from real images through ONNX Runtime, ranges per method,
per-channel weight ranges; written as a scales JSON plus the Q/DQ ONNX built from it.

The torch entry point (``calibrate_model``) takes a model and a data loader, so QAT can start from a
calibration; it exports the model with the same exporter ``build`` uses, so tensor names match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from edgeres.errors import EdgeresError, require
from edgeres.progress import progress_bar
from edgeres.quant.points import activation_tensors, find_points
from edgeres.quant.ranges import BINS, amax_from_histogram, weight_amax
from edgeres.quant.scales import Scales

Batches = Callable[[], Iterable[np.ndarray]]  # a fresh iterator of float32 NCHW batches per call


def _augmented_session(fp32_onnx: Path, tensors: list[str]):
    """An ONNX Runtime session whose outputs are the given intermediate tensors."""
    import onnx

    ort = require("onnxruntime", "desktop")
    model = onnx.load(str(fp32_onnx))
    existing = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor as named
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def collect_histograms(fp32_onnx: Path, batches: Batches, tensors: list[str], count: int | None = None,
                       progress: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Two passes over the data: |x| maxima, then a ``BINS``-bin histogram of |x| on [0, max] per tensor."""
    session = _augmented_session(fp32_onnx, tensors)
    input_name = session.get_inputs()[0].name
    absmax = dict.fromkeys(tensors, 0.0)
    hists = {t: np.zeros(BINS, dtype=np.int64) for t in tensors}
    with progress_bar(enabled=progress) as bar:
        for pass_name in ("ranges", "histograms"):
            task = bar.add_task(f"calibrating ({pass_name})", total=count)
            for batch in batches():
                batch = np.ascontiguousarray(batch.numpy() if hasattr(batch, "numpy") else batch)
                outs = session.run(tensors, {input_name: batch})
                for name, value in zip(tensors, outs, strict=True):
                    a = np.abs(value.astype(np.float32, copy=False)).ravel()
                    if pass_name == "ranges":
                        absmax[name] = max(absmax[name], float(a.max()) if a.size else 0.0)
                    elif absmax[name] > 0:
                        hists[name] += np.histogram(a, bins=BINS, range=(0.0, absmax[name]))[0]
                bar.advance(task, len(batch))
    return {t: (hists[t], np.linspace(0.0, absmax[t] or 1.0, BINS + 1)) for t in tensors}


def calibrate_onnx(fp32_onnx: Path, batches: Batches, method: str = "entropy", percentile: float = 99.99,
                   count: int | None = None, progress: bool = True) -> Scales:
    """Scales for every activation tensor (TensorRT points, CPU points, the rest for implicit caches)
    and per-channel weight ranges of an FP32 ONNX model."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(fp32_onnx))
    points = find_points(model)
    tensors = activation_tensors(model)
    histograms = collect_histograms(fp32_onnx, batches, tensors, count=count, progress=progress)
    role = {t: "trt" for t in points.activations} | {t: "cpu" for t in points.cpu_only}
    activations = {}
    for name in tensors:
        hist, edges = histograms[name]
        # A CPU-only point quantizes a tensor TensorRT keeps float (the conv side of a residual Add): its range
        # must not clip, or the CPU engine would saturate values TensorRT never saturates. Min-max for those.
        amax = amax_from_histogram(hist, edges, "minmax" if role.get(name) == "cpu" else method, percentile)
        activations[name] = {"amax": max(amax, 1e-8), "role": role.get(name, "cache")}
    inits = {i.name: i for i in model.graph.initializer}
    weights = {}
    for name, axis in points.weights.items():
        amax = weight_amax(numpy_helper.to_array(inits[name]), axis, method)
        weights[name] = {"amax": [float(v) for v in amax], "axis": axis}
    return Scales(activations=activations, weights=weights, method=method,
                  percentile=percentile if method == "percentile" else None)


def calibrate_model(model, config, loader, workdir: Path, method: str = "entropy", percentile: float = 99.99,
                    progress: bool = True) -> tuple[Scales, Path]:
    """Calibrate a torch model with a data loader (batches of network inputs, or (inputs, labels)).

    Returns:
        The scales and the FP32 ONNX they are keyed to (written into ``workdir``).
    """
    from edgeres.onnx_model.export import export_model

    fp32 = Path(workdir) / "model.fp32.onnx"
    export_model(model, config, fp32, force=True)

    def batches():
        for item in loader:
            yield item[0] if isinstance(item, (tuple, list)) else item

    return calibrate_onnx(fp32, batches, method, percentile, progress=progress), fp32


def check_method(method: str) -> None:
    from edgeres.quant.ranges import METHODS

    if method not in METHODS:
        raise EdgeresError(f"unknown calibration method '{method}'; accepted: {', '.join(METHODS)}")

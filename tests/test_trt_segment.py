"""On a GPU machine or Jetson only (``pytest -m needs_trt``): TensorRT engines of the suite's trained segmenter.

Skipped elsewhere with the reason (conftest.py), before any fixture is made. The FP32 engine must give the class map
of the ONNX Runtime FP32 engine, and the INT8 engine (the Q/DQ artifact, explicit quantization) the class map of
that artifact run as written (ONNX Runtime, graph optimizations off: TensorRT's arithmetic), each on >= 99.9 % of
the val pixels, and the INT8 engine must score the mIoU of the ONNX Runtime INT8 engine. Never run on the machines
this project is developed on (no GPU there): unverified until a device runs it.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest_plugins = ["fixtures_segment"]
pytestmark = pytest.mark.needs_trt


def _class_maps(predict, images: list, pre) -> list[np.ndarray]:
    """Class maps of ``predict`` (a numpy batch -> logits function) over ``images``, 8 at a time, preprocessed by
    ``pre``."""
    from edgeres.processing import preprocess, read_image
    from edgeres.tasks.segment.outputs import class_maps

    maps = []
    for start in range(0, len(images), 8):
        frames = [read_image(p) for p in images[start:start + 8]]
        maps += class_maps(predict(preprocess(frames, pre)), [f.shape[:2] for f in frames])
    return maps


def _agreement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.concatenate([(x == y).reshape(-1) for x, y in zip(a, b, strict=True)]).mean())


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_tensorrt_segmenter_gives_the_reference_class_map(tmp_path, trained_segmenter, segment_calibration,
                                                          segment_engines, masks_data, precision):
    import onnxruntime as ort

    from edgeres.build import BuildConfig, build_engine
    from edgeres.engine import open_engine
    from edgeres.evaluate import evaluate_open_engine

    out = tmp_path / f"seg-trt-{precision}"
    _, manifest = build_engine(BuildConfig(model=trained_segmenter, out=out, backend="tensorrt", precision=precision,
                                           calib=segment_calibration if precision == "int8" else None, max_batch=8),
                               progress=False)
    assert manifest["backend"]["name"] == "tensorrt" and manifest["task"] == "segment"
    images = sorted((masks_data / "val" / "images").glob("*.png"))[:24]
    with open_engine(out) as engine:
        pre = engine.preprocess
        got = _class_maps(lambda x: next(iter(engine.runner.infer(x).values())), images, pre)
    if precision == "fp32":
        with open_engine(segment_engines["fp32"].parent) as reference:
            want = _class_maps(lambda x: next(iter(reference.runner.infer(x).values())), images, pre)
    else:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        qdq = ort.InferenceSession(str(segment_calibration / "model.qdq.onnx"), options,
                                   providers=["CPUExecutionProvider"])
        want = _class_maps(lambda x: qdq.run(None, {"input": x})[0], images, pre)
    assert _agreement(got, want) >= 0.999
    if precision == "int8":
        trt = evaluate_open_engine(open_engine(out), masks_data / "val")
        cpu = evaluate_open_engine(open_engine(segment_engines["int8"].parent), masks_data / "val")
        assert trt["miou"] == pytest.approx(cpu["miou"], abs=0.01)

"""On a GPU machine or Jetson only (``pytest -m needs_trt``): real TensorRT builds, runs and checks.

Skipped elsewhere with the reason (conftest.py). Each engine is compared with the ONNX Runtime FP32 CPU
engine on real digits using the self-test's tolerances.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeres.device import selftest

pytest_plugins = ["fixtures_models"]
pytestmark = pytest.mark.needs_trt


@pytest.fixture(scope="module")
def reference(val_reference):
    """(val images, labels, ONNX Runtime FP32 logits) on 200 real digits."""
    return val_reference


@pytest.fixture(scope="module")
def calibration(tmp_path_factory, trained_checkpoint, digits_data):
    from edgeres.quant.workflow import CalibConfig, run_calibration

    out = tmp_path_factory.mktemp("trt_calib") / "calib"
    return run_calibration(
        CalibConfig(model=trained_checkpoint, data=digits_data / "train", out=out, num_images=256, progress=False)
    ).folder


def _build(root, checkpoint, precision, calib=None, **trt):
    from edgeres.backends.trt.loader import TrtBuildOptions
    from edgeres.build import BuildConfig, build_engine

    out = root / "engines" / f"trt-{precision}"
    return build_engine(
        BuildConfig(
            model=checkpoint,
            out=out,
            precision=precision,
            backend="tensorrt",
            calib=calib,
            tensorrt=TrtBuildOptions(**trt) if trt else None,
        ),
        progress=False,
    )


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_onnxruntime(tmp_path, trained_checkpoint, calibration, reference, precision):
    from edgeres.engine import open_engine

    images, labels, ref = reference
    engine_file, manifest = _build(
        tmp_path, trained_checkpoint, precision, calibration if precision == "int8" else None
    )
    backend = manifest["backend"]
    assert backend["trtexec"].startswith("trtexec --onnx=") and (engine_file.parent / backend["source_onnx"]).is_file()
    assert manifest["device"]["compute_capability"] and backend["layers"]["known"]
    assert any((tmp_path / "engines").glob("timing.trt*.cache"))  # kept next to the engines, reused
    assert manifest["input"]["opt_batch"] == 1 and manifest["input"]["min_batch"] == 1  # tuned for batch 1
    assert "--saveEngine=trt-" in backend["trtexec"] and ".trtexec.plan" in backend["trtexec"]
    with open_engine(engine_file.parent) as engine:
        logits = selftest.runner_logits(engine.runner, images)
        assert set(engine.runner.last_device_times) == {"h2d_ms", "compute_ms", "d2h_ms"}
        assert engine.runner.last_device_times["compute_ms"] > 0
    result = selftest.compare(ref, logits, labels, precision)
    assert result["passed"], result


def test_cuda_graph_replay_gives_the_same_outputs(tmp_path, trained_checkpoint, reference):
    from edgeres.backends.trt.runner import TensorRTRunner

    images = reference[0]
    engine_file, _ = _build(tmp_path, trained_checkpoint, "fp32", min_batch=1, opt_batch=1)
    with TensorRTRunner(engine_file) as plain, TensorRTRunner(engine_file, cuda_graph=True) as graph:
        for i in range(3):
            a = next(iter(plain.infer(images[i : i + 1]).values()))
            b = next(iter(graph.infer(images[i : i + 1]).values()))
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_changed_engine_bytes_are_refused(tmp_path, trained_checkpoint):
    from edgeres.engine import EngineMismatchError, open_engine

    engine_file, _ = _build(tmp_path, trained_checkpoint, "fp16")
    engine_file.write_bytes(engine_file.read_bytes()[:-1] + b"\0")
    with pytest.raises(EngineMismatchError, match="do not match"):
        open_engine(engine_file.parent)


def test_implicit_int8_from_the_cache_or_a_clear_error(tmp_path, trained_checkpoint, calibration, reference):
    import tensorrt

    from edgeres.backends.trt.versions import features
    from edgeres.errors import EdgeresError

    if not features(tensorrt.__version__).implicit_int8:
        with pytest.raises(EdgeresError, match="--int8-from qdq"):
            _build(tmp_path, trained_checkpoint, "int8", calibration, int8_from="cache")
        return
    engine_file, manifest = _build(tmp_path, trained_checkpoint, "int8", calibration, int8_from="cache")
    assert "--calib=" in manifest["backend"]["trtexec"]
    from edgeres.engine import open_engine

    images, labels, ref = reference
    with open_engine(engine_file.parent) as engine:
        logits = selftest.runner_logits(engine.runner, images)
    assert selftest.compare(ref, logits, labels, "int8")["passed"]


def test_dla_build_or_a_clear_error(tmp_path, trained_checkpoint):
    from edgeres.backends.trt.loader import dla_core_count
    from edgeres.errors import EdgeresError

    if not dla_core_count():
        with pytest.raises(EdgeresError, match="DLA"):
            _build(tmp_path, trained_checkpoint, "fp16", dla_core=0)
        return
    _, manifest = _build(tmp_path, trained_checkpoint, "fp16", dla_core=0)
    assert manifest["backend"]["dla_core"] == 0 and "--useDLACore=0" in manifest["backend"]["trtexec"]
    assert manifest["backend"]["batch_profile"] == {"min": 32, "opt": 32, "max": 32}  # DLA: one fixed batch
    assert manifest["backend"]["dla"]["network_layers"] > 0


def test_selftest_runs_end_to_end(tmp_path, trained_checkpoint):
    report = selftest.run_selftest(selftest.SelftestConfig(out=tmp_path / "st", model=trained_checkpoint, duration=0.5))
    text = selftest.summary_table(report)
    assert "tensorrt-int8" in text and json.dumps(report)
    assert report["passed"], text


def test_corrupt_timing_cache_is_replaced_with_a_warning(tmp_path, trained_checkpoint):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a timing cache")
    _, manifest = _build(tmp_path, trained_checkpoint, "fp16", timing_cache=str(cache))
    assert any(
        "is not a TensorRT timing cache" in w or "another TensorRT version or GPU" in w
        for w in manifest["backend"]["warnings"]
    ), manifest["backend"]["warnings"]
    assert cache.read_bytes() != b"not a timing cache"  # rewritten after the build


def test_batch_outside_the_profile_is_refused(tmp_path, trained_checkpoint, reference):
    from edgeres.backends.trt.runner import TensorRTRunner
    from edgeres.errors import EdgeresError

    engine_file, _ = _build(tmp_path, trained_checkpoint, "fp16", min_batch=2, opt_batch=2)
    with TensorRTRunner(engine_file) as runner, pytest.raises(EdgeresError, match="outside this engine's batch"):
        runner.infer(reference[0][:1])

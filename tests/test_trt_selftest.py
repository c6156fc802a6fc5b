"""The self-test's comparison, timing and table code, fed by ONNX Runtime runners (no GPU here), and its CLI."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_cli

from edgeres.device import selftest
from edgeres.errors import EdgeresError

pytest_plugins = ["fixtures_models"]


@pytest.fixture(scope="module")
def val_batch(val_reference):
    """(preprocessed val images, labels, ONNX Runtime FP32 logits) for 200 real digits."""
    return val_reference


def test_compare_identical_engines_pass(val_batch):
    _, labels, logits = val_batch
    result = selftest.compare(logits, logits, labels, "fp32")
    assert result["passed"] and result["agreement"] == 100.0 and result["max_logit_diff"] == 0.0
    assert result["top1"] > 75.0  # a trained model on real digits
    assert result["images"] == 200


def test_compare_judges_rounding_by_precision(val_batch):
    _, labels, logits = val_batch
    rounded = logits.astype(np.float16).astype(np.float32)  # FP16 rounding of the outputs alone
    fp16 = selftest.compare(logits, rounded, labels, "fp16")
    # Round-to-nearest FP16 moves a value by at most half a unit in the last place: |x| * 2**-11. The bound
    # follows from the fixture's own logits, whose size depends on how training went on this CPU.
    fp16_bound = float(np.abs(logits).max()) * 2.0**-11
    assert fp16["passed"] and 0 < fp16["max_logit_diff"] <= fp16_bound, (fp16["max_logit_diff"], fp16_bound)
    # Every tenth image's logits rotated by one class: its top-1 moves whatever the model, so agreement is 90 %.
    wrong = logits.copy()
    wrong[::10] = np.roll(logits[::10], 1, axis=1)
    result = selftest.compare(logits, wrong, labels, "int8")
    expected = 100.0 * (1 - len(logits[::10]) / len(logits))
    assert not result["passed"] and result["agreement"] == pytest.approx(expected)


def test_compare_refuses_mismatched_shapes(val_batch):
    _, labels, logits = val_batch
    with pytest.raises(EdgeresError, match="do not match"):
        selftest.compare(logits, logits[:, :5], labels, "fp32")


def test_time_runner_with_onnxruntime(trained_engine, val_batch):
    from edgeres.engine import open_engine

    images = val_batch[0]
    with open_engine(trained_engine, threads=1) as engine:
        t = selftest.time_runner(engine.runner, images[:1], duration=0.2, warmup=0.05)
    assert t["batch"] == 1 and t["iterations"] >= 10 and t["host_p50_ms"] > 0
    assert t["gpu_p50_ms"] is None  # no CUDA events on the CPU: never invented


def test_summary_table_is_one_pasteable_block():
    env = {"date": "2026-01-01T00:00:00+00:00", "edgeres": "0.1.0", "python": "3.10.12", "tensorrt": "10.3.0",
           "onnxruntime": "1.20.0", "torch": "2.5.0a0+872d972",
           "cuda": {"binding": "cuda-python", "device": {"name": "Orin", "compute_capability": "8.7"}},
           "driver": None, "jetson": {"model": "Jetson AGX Orin", "l4t": "36.4.0",
                                      "power_mode": {"name": "MAXN", "id": 0}, "clocks_locked": False}}
    rows = [{"name": "onnxruntime-fp32 (CPU)", "reference": True, "build_seconds": 3.1, "size_mib": 42.6,
             "compare": {"top1": 98.5}, "latency": {"host_p50_ms": 5.0, "gpu_p50_ms": None},
             "throughput": {"images_per_s": 900.0}},
            {"name": "tensorrt-int8", "reference": False, "build_seconds": 40.0, "size_mib": 11.9,
             "compare": {"top1": 98.0, "agreement": 99.0, "mean_prob_diff": 0.004, "max_logit_diff": 0.7,
                         "passed": True},
             "latency": {"host_p50_ms": 0.9, "gpu_p50_ms": 0.41}, "throughput": {"images_per_s": 12000.0}},
            {"name": "tensorrt-fp16", "precision": "fp16", "error": "TensorRT 10.3.0 could not build m.onnx: x"}]
    text = selftest.summary_table({"environment": env, "rows": rows, "passed": False, "model_line": "model: m"})
    lines = text.splitlines()
    assert lines[1].startswith("edgeres 0.1.0, Python 3.10.12, TensorRT 10.3.0")
    assert "power mode MAXN (id 0), clocks locked: no" in text
    assert "| tensorrt-int8 | 40.0 | 11.9 | 98.00 | 99.00 | 0.0040 | 0.700 | pass | 0.900 | 0.410 | 12000 |" in text
    assert "| onnxruntime-fp32 (CPU) | 3.1 | 42.6 | 98.50 | - | - | - | reference | 5.000 | - | 900 |" in text
    assert "ERROR: TensorRT 10.3.0 could not build" in text and lines[-1] == "verdict: FAIL"


def test_parse_precisions():
    assert selftest.parse_precisions("fp32, int8") == ("fp32", "int8")
    with pytest.raises(EdgeresError, match="accepted are fp32, fp16, int8"):
        selftest.parse_precisions("fp32,bf16")


def test_cli_selftest_without_a_gpu_exits_cleanly(tmp_path):
    if selftest.unavailable_reason() is None:
        pytest.skip("this machine can run the self-test")
    proc = run_cli("selftest", "--out", tmp_path / "st", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to test here" in proc.stdout and "Traceback" not in proc.stderr
    assert not (tmp_path / "st").exists()

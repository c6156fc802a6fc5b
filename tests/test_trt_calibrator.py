"""The implicit-INT8 calibration cache: written from the scales JSON, checked against version and model."""

from __future__ import annotations

import pytest

from edgeres.backends.trt.calibrator import check_cache, version_from_code
from edgeres.errors import EdgeresError
from edgeres.quant.scales import Scales
from edgeres.quant.trt_cache import trt_version_code, write_cache

TENSORS = {"input", "/conv1/Conv_output_0", "/relu/Relu_output_0", "logits"}


def _scales() -> Scales:
    return Scales(
        activations={
            "input": {"amax": 2.64},
            "/conv1/Conv_output_0": {"amax": 5.0},
            "/relu/Relu_output_0": {"amax": 4.5},
        }
    )


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "10.16.1"])
def test_version_codes_round_trip(version):
    assert version_from_code(trt_version_code(version)) == version


def test_cache_written_from_scales_is_served(tmp_path):
    path = tmp_path / "calib.cache"
    write_cache(_scales(), "10.3.0", path)
    table = check_cache(path, "10.3.0", TENSORS)
    assert table["/conv1/Conv_output_0"] == pytest.approx(5.0 / 127, rel=1e-6)
    assert set(table) == {"input", "/conv1/Conv_output_0", "/relu/Relu_output_0"}


def test_cache_from_another_tensorrt_version(tmp_path):
    path = tmp_path / "calib.cache"
    write_cache(_scales(), "8.6.1", path)
    with pytest.raises(EdgeresError, match=r"written for TensorRT 8\.6\.1, this is TensorRT 10\.3\.0.*--trt-version"):
        check_cache(path, "10.3.0", TENSORS)


def test_cache_from_another_model(tmp_path):
    path = tmp_path / "calib.cache"
    other = Scales(activations={"backbone.0.out": {"amax": 1.0}, "input": {"amax": 2.0}})
    write_cache(other, "10.3.0", path)
    with pytest.raises(EdgeresError, match=r"another model: 1 of its 2 tensors.*backbone\.0\.out"):
        check_cache(path, "10.3.0", TENSORS)


def test_cache_of_another_algorithm_or_not_a_cache(tmp_path):
    path = tmp_path / "calib.cache"
    path.write_text("TRT-100300-MinMaxCalibration\ninput: 3c000000\n")
    with pytest.raises(EdgeresError, match="expected 'TRT-100300-EntropyCalibration2'"):
        check_cache(path, "10.3.0", TENSORS)
    path.write_text("hello\n")
    with pytest.raises(EdgeresError, match="not a TensorRT calibration cache"):
        check_cache(path, "10.3.0", TENSORS)


def test_no_cache_for_tensorrt_11(tmp_path):
    with pytest.raises(EdgeresError, match="Q/DQ"):
        write_cache(_scales(), "11.0.0", tmp_path / "calib.cache")

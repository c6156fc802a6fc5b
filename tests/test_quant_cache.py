"""TensorRT calibration caches written from the scales JSON of the real calibrated ResNet-18."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from helpers import assert_user_error, files_in, run_cli

from edgeres.errors import EdgeresError
from edgeres.quant.trt_cache import read_cache, trt_version_code, write_cache

pytest_plugins = ["fixtures_quant"]


@pytest.mark.parametrize(("version", "header"), [("8.6.1", "TRT-8601-EntropyCalibration2"),
                                                 ("10.3.0", "TRT-100300-EntropyCalibration2")])
def test_cache_round_trips_the_scales_float32_exact(quant_calib, tmp_path, version, header):
    path = tmp_path / "calib.cache"
    write_cache(quant_calib.scales, version, path)
    got_header, table = read_cache(path)
    assert got_header == header
    expected = {name: np.float32(entry["amax"] / 127) for name, entry in quant_calib.scales.activations.items()}
    assert table.keys() == expected.keys()
    for name, scale in expected.items():
        assert np.float32(table[name]).tobytes() == scale.tobytes(), name  # bit for bit
    for line in path.read_text().splitlines()[1:]:
        assert re.fullmatch(r".+: [0-9a-f]{8}", line), line  # TensorRT's "name: <big-endian float32 hex>"


def test_cache_scales_are_the_qdq_artifacts_activation_scales(quant_calib, tmp_path):
    """Implicit INT8 from the cache and explicit INT8 from the Q/DQ file quantize activations identically."""
    import onnx
    from onnx import numpy_helper

    write_cache(quant_calib.scales, "10.3.0", tmp_path / "calib.cache")
    _, table = read_cache(tmp_path / "calib.cache")
    qdq = onnx.load(str(quant_calib.qdq_onnx))
    values = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    points = [n for n in qdq.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in values]
    assert len(points) > 20
    for q in points:
        assert struct.pack(">f", table[q.input[0]]) == struct.pack(">f", float(values[q.input[1]])), q.input[0]


def test_cache_keys_are_tensor_names_of_the_fp32_onnx(quant_calib, tmp_path):
    import onnx

    write_cache(quant_calib.scales, "8.6.1", tmp_path / "calib.cache")
    _, table = read_cache(tmp_path / "calib.cache")
    fp32 = onnx.load(str(quant_calib.fp32_onnx))
    weights = {i.name for i in fp32.graph.initializer}
    tensors = {i.name for i in fp32.graph.input} | {o for n in fp32.graph.node for o in n.output}
    assert set(table) <= tensors - weights
    # every tensor a Conv/Gemm/Add reads, and the network input, has an entry for an implicit build to use
    read = {i for n in fp32.graph.node if n.op_type in ("Conv", "Gemm", "Add") for i in n.input} - weights
    assert read | {"input"} <= set(table)


@pytest.mark.parametrize("version", ["11.0.0", "11.2", "12.1.0", "11"])
def test_tensorrt_11_and_later_are_refused_with_the_qdq_path(quant_calib, tmp_path, version):
    path = tmp_path / "calib.cache"
    with pytest.raises(EdgeresError, match=r"TensorRT 11.*Q/DQ ONNX"):
        write_cache(quant_calib.scales, version, path)
    assert not path.exists()


@pytest.mark.parametrize("version", ["ten", "10", "", "v10.3.0"])
def test_a_malformed_version_is_a_clear_error(quant_calib, tmp_path, version):
    with pytest.raises(EdgeresError, match=r"not like 8\.6\.1"):
        write_cache(quant_calib.scales, version, tmp_path / "calib.cache")


def test_version_codes_match_nv_tensorrt_version():
    assert trt_version_code("8.6.1") == 8601
    assert trt_version_code("8.5.2.2") == 8502
    assert trt_version_code("10.3.0") == 100300
    assert trt_version_code("10.13.2") == 101302


def test_read_cache_refuses_a_file_that_is_not_a_cache(tmp_path):
    bad = tmp_path / "scales.txt"
    bad.write_text("input: 3c010a14\n")
    with pytest.raises(EdgeresError, match="not a TensorRT calibration cache"):
        read_cache(bad)
    bad.write_text("TRT-8601-EntropyCalibration2\ninput: zz\n")
    with pytest.raises(EdgeresError, match="bad cache line"):
        read_cache(bad)


def test_calibrate_cli_writes_the_cache_beside_reused_scales(quant_model, quant_digits, quant_calib, tmp_path):
    import shutil

    out = shutil.copytree(quant_calib.folder, tmp_path / "r18-entropy")
    proc = run_cli("calibrate", "--model", quant_model, "--data", quant_digits / "train", "--out", out,
                   "--trt-version", "10.3.0", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "reused" in proc.stdout
    header, table = read_cache(out / "calib.trt-10.3.0.cache")
    assert header == "TRT-100300-EntropyCalibration2" and len(table) == len(quant_calib.scales.activations)


def test_calibrate_cli_refuses_tensorrt_11_before_calibrating(quant_model, quant_digits, tmp_path):
    out = tmp_path / "calibration" / "r18-entropy"
    proc = run_cli("calibrate", "--model", quant_model, "--data", quant_digits / "train", "--out", out,
                   "--trt-version", "11.0.0", "--quiet", cwd=tmp_path)
    assert_user_error(proc, "TensorRT 11", "Q/DQ")
    assert files_in(tmp_path) == []  # refused up front: no calibration ran, nothing was written

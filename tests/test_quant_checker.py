"""The TensorRT Q/DQ rule checker: one broken copy of the real Q/DQ ResNet-18 per rule, and the build gate."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import assert_user_error, run_cli

from edgeres.errors import EdgeresError
from edgeres.quant.checker import RULES, check_qdq_model

pytest_plugins = ["fixtures_quant"]

ACT = "/layer1/layer1.0/relu/Relu_output_0"  # read only by layer1.0.conv2: a plain activation point
CONV = "/layer1/layer1.0/conv2/Conv"
DOWNSAMPLE_ADD = "/layer2/layer2.0/Add"


@pytest.fixture(scope="module")
def valid_qdq(quant_calib):
    import onnx

    return onnx.load(str(quant_calib.qdq_onnx))


def _copy(model):
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _set_init(model, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    init = next(i for i in model.graph.initializer if i.name == name)
    init.CopyFrom(numpy_helper.from_array(value, name))


def _init(model, name: str) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == name))


def _node(model, name: str):
    return next(n for n in model.graph.node if n.name == name)


def _set_axis(node, axis: int | None) -> None:
    from onnx import helper

    keep = [a for a in node.attribute if a.name != "axis"]
    del node.attribute[:]
    node.attribute.extend(keep)
    if axis is not None:
        node.attribute.append(helper.make_attribute("axis", axis))


def uint8_zero_point(m):
    _set_init(m, f"{ACT}_zero_point", np.uint8(0))


def nonzero_zero_point(m):
    _set_init(m, f"{ACT}_zero_point", np.int8(3))


def negative_scale(m):
    _set_init(m, f"{ACT}_scale", -_init(m, f"{ACT}_scale"))


def per_tensor_weight_scale(m):
    w = "layer1.0.conv2.weight"
    _set_init(m, f"{w}_scale", np.float32(_init(m, f"{w}_scale").max()))
    _set_init(m, f"{w}_zero_point", np.int8(0))
    for suffix in ("_QuantizeLinear", "_DequantizeLinear"):
        _set_axis(_node(m, w + suffix), None)


def weight_scale_on_the_input_axis(m):
    # layer1.0.conv2.weight is 64x64x3x3: per-input-channel scales have the right size but the wrong axis
    w = "layer1.0.conv2.weight"
    weight = _init(m, w)
    _set_init(m, f"{w}_scale", (np.abs(weight).max(axis=(0, 2, 3)) / 127).astype(np.float32))
    for suffix in ("_QuantizeLinear", "_DequantizeLinear"):
        _set_axis(_node(m, w + suffix), 1)


def gemm_weight_on_axis_1(m):
    weight = _init(m, "fc.weight")  # (10, 512), transB=1: output channels are axis 0
    _set_init(m, "fc.weight_scale", (np.abs(weight).max(axis=0) / 127).astype(np.float32))
    _set_init(m, "fc.weight_zero_point", np.zeros(weight.shape[1], np.int8))
    for suffix in ("_QuantizeLinear", "_DequantizeLinear"):
        _set_axis(_node(m, "fc.weight" + suffix), 1)


def per_channel_activation_scale(m):
    scale = _init(m, f"{ACT}_scale")
    _set_init(m, f"{ACT}_scale", np.full(64, scale, np.float32))
    _set_init(m, f"{ACT}_zero_point", np.zeros(64, np.int8))
    for suffix in ("_QuantizeLinear", "_DequantizeLinear"):
        _set_axis(_node(m, ACT + suffix), 1)


def conv_reads_a_float_activation(m):
    conv = _node(m, CONV)
    assert conv.input[0] == f"{ACT}_dequantized"
    conv.input[0] = ACT


def conv_reads_a_float_weight(m):
    conv = _node(m, CONV)
    conv.input[1] = "layer1.0.conv2.weight"


def dq_with_another_scale(m):
    _node(m, f"{ACT}_DequantizeLinear").input[1] = "input_scale"


def q_feeds_a_non_dq(m):
    from onnx import helper

    m.graph.node.append(helper.make_node("Identity", [f"{ACT}_quantized"], ["stray"], name="stray_Identity"))


def residual_add_without_dequantized_input(m):
    add = _node(m, DOWNSAMPLE_ADD)
    downsample = "/layer2/layer2.0/downsample/downsample.0/Conv_output_0"
    k = list(add.input).index(f"{downsample}_dequantized")
    add.input[k] = downsample


BREAKERS = {
    "int8": [uint8_zero_point],
    "symmetric": [nonzero_zero_point],
    "positive-scale": [negative_scale],
    "weight-per-channel": [per_tensor_weight_scale, weight_scale_on_the_input_axis, gemm_weight_on_axis_1],
    "activation-per-tensor": [per_channel_activation_scale],
    "weighted-op-quantized": [conv_reads_a_float_activation, conv_reads_a_float_weight],
    "q-dq-pair": [dq_with_another_scale, q_feeds_a_non_dq],
    "residual-add": [residual_add_without_dequantized_input],
}
CASES = [(rule, breaker) for rule, breakers in BREAKERS.items() for breaker in breakers]


def test_every_rule_has_a_breaking_case():
    assert set(BREAKERS) == set(RULES)


def test_the_valid_artifact_breaks_no_rule(valid_qdq):
    assert check_qdq_model(valid_qdq) == []


@pytest.mark.parametrize(("rule", "breaker"), CASES, ids=[f"{r}-{b.__name__}" for r, b in CASES])
def test_a_file_breaking_one_rule_is_reported_with_that_rule(valid_qdq, tmp_path, rule, breaker):
    import onnx

    from edgeres.build import check_qdq_for_tensorrt

    broken = _copy(valid_qdq)
    breaker(broken)
    path = tmp_path / "model.qdq.onnx"
    onnx.save(broken, str(path))

    found = check_qdq_model(onnx.load(str(path)))
    assert {v.rule for v in found} == {rule}, [str(v) for v in found]
    assert all(v.node and v.message for v in found)
    with pytest.raises(EdgeresError, match=rf"\[{rule}\]") as info:
        check_qdq_for_tensorrt(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def _broken_calibration(quant_calib, valid_qdq, folder, breaker):
    """A calibration folder of the fixture model whose model.qdq.onnx breaks a rule (scales and FP32 intact)."""
    import onnx

    shutil.copytree(quant_calib.folder, folder)
    broken = _copy(valid_qdq)
    breaker(broken)
    onnx.save(broken, str(folder / "model.qdq.onnx"))
    return folder


def test_build_tensorrt_int8_runs_the_checker_before_anything_else(quant_model, quant_calib, valid_qdq, tmp_path):
    """TensorRT is not installed here: the Q/DQ rules are checked first, so the user learns the artifact is broken
    (the error that holds on every machine) rather than only that TensorRT is missing."""
    calib = _broken_calibration(quant_calib, valid_qdq, tmp_path / "calib", uint8_zero_point)
    out = tmp_path / "engines" / "r18-int8-trt"
    proc = run_cli("build", "--model", quant_model, "--backend", "tensorrt", "--precision", "int8",
                   "--calib", calib, "--out", out, cwd=tmp_path)
    line = assert_user_error(proc, "[int8]", "model.qdq.onnx", "TensorRT Q/DQ rule")
    assert "not installed" not in line
    assert not out.exists()


def test_build_tensorrt_int8_with_a_valid_artifact_then_needs_tensorrt(quant_model, quant_calib, tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed: the build goes on to the GPU checks")
    out = tmp_path / "engines" / "r18-int8-trt"
    proc = run_cli("build", "--model", quant_model, "--backend", "tensorrt", "--precision", "int8",
                   "--calib", quant_calib.folder, "--out", out, cwd=tmp_path)
    assert_user_error(proc, "'tensorrt' is not installed", "pip install 'edgeres[tensorrt]'")
    assert not out.exists()

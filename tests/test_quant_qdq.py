"""The Q/DQ writer on a real exported, trained ResNet-18 and its calibrated scales: TensorRT's explicit form."""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.errors import EdgeresError

pytest_plugins = ["fixtures_quant"]

QMAX = 127


@pytest.fixture(scope="module")
def artifact(quant_calib):
    """(FP32 model, Q/DQ model, scales, {initializer: array}) of the fixture calibration."""
    import onnx
    from onnx import numpy_helper

    fp32 = onnx.load(str(quant_calib.fp32_onnx))
    qdq = onnx.load(str(quant_calib.qdq_onnx))
    values = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    return fp32, qdq, quant_calib.scales, values


def _attr(node, name, default=None):
    return next((a.i for a in node.attribute if a.name == name), default)


def _made_by(model) -> dict:
    return {out: n for n in model.graph.node for out in n.output}


def _qdq_pair(made_by, tensor):
    """The (Q, DQ) pair behind a dequantized input, asserting it is one."""
    dq = made_by.get(tensor)
    assert dq is not None and dq.op_type == "DequantizeLinear", f"{tensor} is not dequantized"
    q = made_by.get(dq.input[0])
    assert q is not None and q.op_type == "QuantizeLinear", f"{dq.name} does not read a QuantizeLinear"
    assert list(q.input[1:]) == list(dq.input[1:]), f"{q.name} and {dq.name} use different scale/zero point"
    return q, dq


def test_the_model_is_a_real_resnet18_export(artifact):
    fp32, qdq, _, _ = artifact
    ops = [n.op_type for n in fp32.graph.node]
    assert ops.count("Conv") == 20 and ops.count("Gemm") == 1 and ops.count("Add") == 8
    assert "BatchNormalization" not in ops  # folded by the exporter: its scale lives in the weight scales
    q_ops = [n.op_type for n in qdq.graph.node]
    assert q_ops.count("QuantizeLinear") == q_ops.count("DequantizeLinear") > 21


def test_every_zero_point_is_int8_zero_and_every_scale_positive(artifact):
    _, qdq, _, values = artifact
    nodes = [n for n in qdq.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert nodes
    for node in nodes:
        assert len(node.input) == 3, f"{node.name} has no explicit zero point (would default to uint8)"
        zp, scale = values[node.input[2]], values[node.input[1]]
        assert zp.dtype == np.int8, f"{node.name}: zero point {zp.dtype}"
        assert not np.any(zp), f"{node.name}: zero point not 0"
        assert scale.dtype == np.float32 and np.all(np.isfinite(scale)) and np.all(scale > 0), node.name


def test_weights_are_per_channel_on_the_output_axis_for_conv_and_gemm(artifact):
    fp32, qdq, scales, values = artifact
    made_by = _made_by(qdq)
    fp32_nodes = {n.name: n for n in fp32.graph.node}
    fp32_inits = {i.name for i in fp32.graph.initializer}
    checked = stems = 0
    for node in qdq.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        if node.op_type == "Gemm":
            assert _attr(node, "transB") == 1  # torch Linear: weight (out, in), output channels on axis 0
        q, dq = _qdq_pair(made_by, node.input[1])
        weight = q.input[0]
        assert weight == fp32_nodes[node.name].input[1] and weight in fp32_inits  # the FP32 weight, same name
        assert _attr(q, "axis") == 0 and _attr(dq, "axis") == 0
        w, scale = values[weight], values[q.input[1]]
        assert scale.shape == (w.shape[0],), f"{weight}: {scale.shape} scales for {w.shape[0]} output channels"
        entry = scales.weights[weight]
        assert entry["axis"] == 0
        # the stem reads the signed normalized image: its weights on -64..64 (quant.signs), every other op's on
        # -127..127 (they read ReLU outputs)
        qmax = 64 if node.input[0] == fp32.graph.input[0].name or \
            fp32_nodes[node.name].input[0] == fp32.graph.input[0].name else QMAX
        np.testing.assert_array_equal(scale, np.asarray(entry["amax"], dtype=np.float32) / np.float32(qmax))
        # amax is each channel's absmax (entropy keeps weights unclipped), so no weight saturates
        np.testing.assert_allclose(entry["amax"], np.abs(w.reshape(w.shape[0], -1)).max(axis=1), rtol=1e-6)
        integers = np.rint(w / scale.reshape(-1, *[1] * (w.ndim - 1)))
        assert np.abs(integers).max() == qmax
        stems += qmax == 64
        checked += 1
    assert checked == 21 and stems == 1


def test_activations_are_per_tensor_on_every_conv_and_gemm_input(artifact):
    fp32, qdq, scales, values = artifact
    made_by = _made_by(qdq)
    fp32_nodes = {n.name: n for n in fp32.graph.node}
    for node in qdq.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        q, _ = _qdq_pair(made_by, node.input[0])
        assert q.input[0] == fp32_nodes[node.name].input[0]  # quantizes the very tensor the FP32 op read
        scale = values[q.input[1]]
        assert scale.ndim == 0, f"{q.name}: activation scale shape {scale.shape}"
        assert scale == np.float32(scales.activations[q.input[0]]["amax"] / QMAX)
        assert scales.activations[q.input[0]]["role"] == "trt"


def test_every_residual_add_dequantizes_its_identity_or_downsample_input(artifact):
    fp32, qdq, _, _ = artifact
    made_by, fp32_made_by = _made_by(qdq), _made_by(fp32)
    adds = {n.name: n for n in qdq.graph.node if n.op_type == "Add"}
    kinds = []
    for fp32_add in (n for n in fp32.graph.node if n.op_type == "Add"):
        add = adds[fp32_add.name]
        main = [i for i in fp32_add.input if fp32_made_by[i].name.endswith("conv2/Conv")]
        (residual,) = [i for i in fp32_add.input if i not in main]
        assert len(main) == 1
        assert main[0] in add.input  # the main branch stays float: TensorRT fuses it as the Conv's epilogue
        k = list(fp32_add.input).index(residual)
        q, _ = _qdq_pair(made_by, add.input[k])
        assert q.input[0] == residual
        kinds.append(fp32_made_by[residual].op_type)
    # 3 blocks with a downsample Conv on the identity path, 5 plain identities (block input: MaxPool or ReLU)
    assert sorted(kinds) == ["Conv"] * 3 + ["MaxPool"] + ["Relu"] * 4


def test_only_the_tensorrt_points_are_quantized(artifact):
    fp32, qdq, _, values = artifact
    fp32_made_by = _made_by(fp32)
    expected = {n.input[0] for n in fp32.graph.node if n.op_type in ("Conv", "Gemm")}
    for add in (n for n in fp32.graph.node if n.op_type == "Add"):
        expected |= {i for i in add.input if not fp32_made_by[i].name.endswith("conv2/Conv")}
    quantized = {n.input[0] for n in qdq.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in values}
    assert quantized == expected


def test_the_qdq_model_passes_the_onnx_checker_and_the_tensorrt_rules(artifact):
    import onnx

    from edgeres.quant.checker import check_qdq_model

    _, qdq, _, _ = artifact
    onnx.checker.check_model(qdq, full_check=True)
    assert check_qdq_model(qdq) == []


def test_the_qdq_model_runs_in_onnx_runtime_and_predicts_like_fp32(artifact, quant_calib, quant_val):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    fp32 = ort.InferenceSession(str(quant_calib.fp32_onnx), so, providers=["CPUExecutionProvider"])
    qdq = ort.InferenceSession(str(quant_calib.qdq_onnx), so, providers=["CPUExecutionProvider"])
    batch = next(quant_val.batches(256))
    a = fp32.run(None, {"input": batch})[0]
    b = qdq.run(None, {"input": batch})[0]
    assert b.shape == a.shape == (256, 10) and np.all(np.isfinite(b))
    assert not np.array_equal(a, b)  # really quantized
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.97


def test_the_writer_refuses_scales_of_another_export(artifact):
    import copy

    from edgeres.quant.qdq import write_qdq

    fp32, _, scales, _ = artifact
    missing_act = copy.deepcopy(scales)
    del missing_act.activations["/layer2/layer2.0/relu/Relu_output_0"]
    with pytest.raises(EdgeresError, match="another model export"):
        write_qdq(fp32, missing_act)
    missing_w = copy.deepcopy(scales)
    del missing_w.weights["fc.weight"]
    with pytest.raises(EdgeresError, match=r"fc\.weight"):
        write_qdq(fp32, missing_w)
    wrong_axis = copy.deepcopy(scales)
    wrong_axis.weights["conv1.weight"]["axis"] = 1
    with pytest.raises(EdgeresError, match="axis"):
        write_qdq(fp32, wrong_axis)


def test_rewriting_from_the_scales_reproduces_the_artifact(artifact):
    from edgeres.quant.qdq import write_qdq

    fp32, qdq, scales, _ = artifact
    assert write_qdq(fp32, scales).SerializeToString() == qdq.SerializeToString()

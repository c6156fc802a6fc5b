"""The INT8 CPU engine: integer kernels only, the same quantized values as the Q/DQ artifact, and the same
predictions as the fake-quantized torch model."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_quant import one_torch_thread

from edgeres.errors import EdgeresError

pytest_plugins = ["fixtures_quant"]

INTEGER_KERNELS = {"QLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat"}


@pytest.fixture(scope="module")
def engine_model(quant_int8_engine):
    import onnx

    from edgeres.engine import resolve

    engine_file, _ = resolve(quant_int8_engine)
    return onnx.load(str(engine_file))


@pytest.fixture(scope="module")
def qdq_model(quant_calib):
    import onnx

    return onnx.load(str(quant_calib.qdq_onnx))


def _values(model) -> dict:
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _attr(node, name, default=None):
    return next((a.i for a in node.attribute if a.name == name), default)


def _activation_scales(scales) -> set[bytes]:
    """Every activation scale the scales JSON defines (TensorRT points and the CPU-only Add inputs)."""
    return {np.float32(e["amax"] / 127).tobytes() for e in scales.activations.values() if e["role"] in ("trt", "cpu")}


def test_every_conv_and_gemm_of_the_engine_is_an_integer_kernel(engine_model, quant_int8_engine):
    import json

    from edgeres.quant.cpu import check_integer_kernels, float_compute_nodes

    assert float_compute_nodes(engine_model) == []
    check_integer_kernels(engine_model)  # does not raise
    ops = [n.op_type for n in engine_model.graph.node]
    assert ops.count("QLinearConv") == 20  # the 20 Conv of a ResNet-18
    assert sum(op in INTEGER_KERNELS - {"QLinearConv"} for op in ops) == 1  # and its classifier Gemm
    manifest = json.loads(next(quant_int8_engine.glob("*.manifest.json")).read_text())
    assert manifest["precision"] == "int8" and manifest["calibration"]["method"] == "entropy"


def test_check_integer_kernels_fails_on_a_graph_with_a_float_conv(quant_calib, engine_model):
    import onnx
    from onnx import helper

    from edgeres.quant.cpu import check_integer_kernels

    with pytest.raises(EdgeresError, match=r"21 Conv/Gemm node\(s\) would run in float"):
        check_integer_kernels(onnx.load(str(quant_calib.fp32_onnx)))
    # one float Conv slipped into the otherwise integer engine graph is enough
    model = onnx.ModelProto()
    model.CopyFrom(engine_model)
    model.graph.node.append(helper.make_node("Conv", ["input", "conv1.weight_int8"], ["stray"], name="/stray/Conv"))
    with pytest.raises(EdgeresError, match="/stray/Conv"):
        check_integer_kernels(model)


def test_engine_weights_are_exactly_what_the_qdq_artifacts_quantize_nodes_produce(qdq_model, engine_model):
    import onnx
    import onnxruntime as ort

    qdq_values, engine_values = _values(qdq_model), _values(engine_model)
    weight_qs = [n for n in qdq_model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in qdq_values]
    assert len(weight_qs) == 21
    # What ONNX Runtime's QuantizeLinear makes of each float weight in the Q/DQ artifact itself:
    probe = onnx.ModelProto()
    probe.CopyFrom(qdq_model)
    for q in weight_qs:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(q.output[0], onnx.TensorProto.INT8, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outputs = session.run([q.output[0] for q in weight_qs], {"input": np.zeros((1, 3, 32, 32), np.float32)})

    for q, from_ort in zip(weight_qs, outputs, strict=True):
        w, scale, axis = qdq_values[q.input[0]], qdq_values[q.input[1]], _attr(q, "axis", 1)
        shape = [1] * w.ndim
        shape[axis] = -1
        expected = np.clip(np.rint(w / scale.reshape(shape)), -128, 127).astype(np.int8)  # round half to even
        engine_w = engine_values[q.input[0] + "_int8"]
        assert engine_w.dtype == np.int8
        np.testing.assert_array_equal(engine_w, expected, err_msg=q.input[0])
        np.testing.assert_array_equal(engine_w, from_ort, err_msg=q.input[0])
        assert engine_values[q.input[1]].tobytes() == scale.tobytes()  # per-channel scale untouched
        assert not np.any(engine_values[q.input[2]])


def test_rewrite_keeps_every_activation_scale_and_shifts_zero_points_to_uint8_128(quant_calib, qdq_model):
    from edgeres.quant.cpu import rewrite_for_cpu

    cpu = rewrite_for_cpu(qdq_model, quant_calib.scales)
    qdq_values, cpu_values = _values(qdq_model), _values(cpu)
    activation_qs = [n for n in qdq_model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in qdq_values]
    assert activation_qs
    for q in activation_qs:
        assert cpu_values[q.input[1]].tobytes() == qdq_values[q.input[1]].tobytes(), q.input[1]
        zp = cpu_values[q.input[2]]
        assert zp.dtype == np.uint8 and zp.shape == () and int(zp) == 128, q.input[2]
    allowed = _activation_scales(quant_calib.scales)
    per_tensor = [n for n in cpu.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                  and cpu_values[n.input[1]].size == 1 and not n.input[0].endswith(("_int8", "_int32"))]
    assert len(per_tensor) > 2 * len(activation_qs)  # the CPU form adds points (ReLU inputs, Add inputs)
    for node in per_tensor:
        assert cpu_values[node.input[1]].tobytes() in allowed, f"{node.name}: a scale the scales JSON does not hold"
        zp = cpu_values[node.input[2]]
        assert zp.dtype == np.uint8 and int(zp) == 128, node.name


def test_uint8_activations_are_the_int8_values_plus_128(quant_calib, qdq_model, quant_val):
    """q_u8 = q_s8 + 128 exactly: run the input's Q node of both forms on real images."""
    import onnx
    import onnxruntime as ort

    from edgeres.quant.cpu import rewrite_for_cpu

    cpu = rewrite_for_cpu(qdq_model, quant_calib.scales)
    batch = next(quant_val.batches(64))
    got = []
    for model, dtype in ((qdq_model, onnx.TensorProto.INT8), (cpu, onnx.TensorProto.UINT8)):
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        probe.graph.output.append(onnx.helper.make_tensor_value_info("input_quantized", dtype, None))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.log_severity_level = 3
        session = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
        got.append(session.run(["input_quantized"], {"input": batch})[0])
    s8, u8 = got
    assert s8.dtype == np.int8 and u8.dtype == np.uint8
    assert s8.min() < 0 < s8.max()  # both signs occur: the shift is really exercised
    np.testing.assert_array_equal(u8.astype(np.int16), s8.astype(np.int16) + 128)


def test_engine_integer_kernels_use_uint8_128_activations_and_calibrated_scales(quant_calib, engine_model):
    values = _values(engine_model)
    allowed = _activation_scales(quant_calib.scales)
    # (activation scale, activation zero point) input positions of each integer kernel
    positions = {"QLinearConv": [(1, 2), (6, 7)], "QLinearAdd": [(1, 2), (4, 5), (6, 7)], "QGemm": [(1, 2)]}
    seen = 0
    for node in engine_model.graph.node:
        for s, z in positions.get(node.op_type, []):
            assert values[node.input[s]].tobytes() in allowed, f"{node.name}: input {s} scale"
            zp = values[node.input[z]]
            assert zp.dtype == np.uint8 and int(zp) == 128, f"{node.name}: input {z} zero point"
            seen += 1
        if node.op_type == "QLinearConv":
            assert values[node.input[3]].dtype == np.int8 and not np.any(values[node.input[5]])  # s8 weights, zp 0
    assert seen >= 20 * 2 + 1


def test_int8_engines_open_with_the_cpu_int8_session_settings(quant_int8_engine):
    from edgeres.backends.onnxrt.loader import int8_session_config
    from edgeres.engine import open_engine

    engine = open_engine(quant_int8_engine)
    assert engine.manifest["precision"] == "int8"
    expected = dict(engine.manifest["backend"].get("session_config", {})) | int8_session_config()
    assert engine.runner.loader.session_config == expected
    with engine:  # ONNX Runtime accepts the settings
        assert engine.runner.infer(np.zeros((2, 3, 32, 32), np.float32))["logits"].shape == (2, 10)


def test_int8_engine_agrees_with_the_fake_quantized_torch_model(quant_model, quant_calib, quant_int8_engine, quant_val):
    """The issue's bar: the INT8 CPU engine and the fake-quantized torch model agree on >= 99.5% of top-1
    predictions on the val split, and INT8 keeps FP32's accuracy within a few points."""
    import onnx

    from edgeres.engine import open_engine
    from edgeres.evaluate import predict_logits, torch_predict_fn
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.quant.fakequant import fake_quant_model

    model = load_checkpoint(quant_model).build_model()
    fq = fake_quant_model(model, quant_calib.scales, onnx.load(str(quant_calib.fp32_onnx)))
    with one_torch_thread():
        fp32_logits = predict_logits(torch_predict_fn(model), quant_val, batch_size=250)
        fq_logits = predict_logits(torch_predict_fn(fq), quant_val, batch_size=250)
    with open_engine(quant_int8_engine) as engine:
        int8_logits = predict_logits(lambda b: engine.runner.infer(b)["logits"], quant_val, batch_size=32)

    labels = quant_val.labels
    assert len(labels) == 1000
    agree = float((fq_logits.argmax(1) == int8_logits.argmax(1)).mean())
    fp32_top1 = 100 * float((fp32_logits.argmax(1) == labels).mean())
    int8_top1 = 100 * float((int8_logits.argmax(1) == labels).mean())
    assert agree >= 0.995, f"engine and fake-quant torch agree on only {100 * agree:.1f}% of val images"
    assert fp32_top1 >= 90.0
    assert abs(fp32_top1 - int8_top1) <= 3.0, f"FP32 {fp32_top1:.1f}% vs INT8 {int8_top1:.1f}%"
    assert not np.allclose(fq_logits, fp32_logits, atol=1e-3)  # the fake-quant model really is quantized

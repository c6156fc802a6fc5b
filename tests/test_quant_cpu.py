"""The INT8 CPU engine: integer kernels only, the same quantized values as the Q/DQ artifact, and the same
predictions as the fake-quantized torch model."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_models import one_torch_thread

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
        engine_w = engine_values.get(q.input[0] + "_int8")
        if engine_w is None:  # the stem reads its signed input split in two, with the weights [w, -w]
            engine_w, negated = np.split(engine_values[q.input[0] + "_int8_split"], 2, axis=1)
            np.testing.assert_array_equal(negated, -expected, err_msg=q.input[0])
        assert engine_w.dtype == np.int8
        np.testing.assert_array_equal(engine_w, expected, err_msg=q.input[0])
        np.testing.assert_array_equal(engine_w, from_ort, err_msg=q.input[0])
        assert engine_values[q.input[1]].tobytes() == scale.tobytes()  # per-channel scale untouched
        assert not np.any(engine_values[q.input[2]])


def test_rewrite_keeps_every_activation_scale_and_carries_post_relu_points_as_uint8_zero_point_0(quant_calib,
                                                                                                   qdq_model):
    """Same scales; zero point 0 exactly where the values are never negative (ReLU/MaxPool outputs and the
    classifier's input), 128 for the signed points (the normalized image, the residual Add inputs); only the stem,
    whose weights are on -64..64, and the Adds read signed values."""
    from edgeres.onnx_model.graph import producers
    from edgeres.quant.cpu import rewrite_for_cpu

    cpu = rewrite_for_cpu(qdq_model, quant_calib.scales)
    qdq_values, cpu_values = _values(qdq_model), _values(cpu)
    made_by = producers(qdq_model.graph)
    activation_qs = [n for n in qdq_model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in qdq_values]
    assert activation_qs
    for q in activation_qs:
        assert cpu_values[q.input[1]].tobytes() == qdq_values[q.input[1]].tobytes(), q.input[1]
        zp = cpu_values[q.input[2]]
        unsigned = q.input[0] in made_by and made_by[q.input[0]].op_type in ("Relu", "MaxPool", "Flatten")
        assert zp.dtype == np.uint8 and zp.shape == () and int(zp) == (0 if unsigned else 128), q.input[2]
    allowed = _activation_scales(quant_calib.scales)
    per_tensor = [n for n in cpu.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                  and cpu_values[n.input[1]].size == 1 and not n.input[0].endswith(("_int8", "_int32", "_split"))]
    assert len(per_tensor) > 2 * len(activation_qs)  # the CPU form adds points (ReLU inputs, Add inputs)
    signed = set()
    for node in per_tensor:
        assert cpu_values[node.input[1]].tobytes() in allowed, f"{node.name}: a scale the scales JSON does not hold"
        zp = cpu_values[node.input[2]]
        assert zp.dtype == np.uint8 and int(zp) in (0, 128), node.name
        if int(zp) == 128:
            signed.add(node.input[1])
    signed_readers = {n.op_type for n in cpu.graph.node for i in n.input if i in {
        d.output[0] for d in cpu.graph.node if d.op_type == "DequantizeLinear" and d.input[1] in signed and
        int(cpu_values[d.input[2]]) == 128}}
    assert signed and signed_readers == {"Add", "Conv"}
    cpu_made_by = producers(cpu.graph)
    convs = [n for n in cpu.graph.node if n.op_type == "Conv" and int(cpu_values[cpu_made_by[n.input[0]].input[2]])]
    assert [c.name for c in convs] == ["/conv1/Conv"]  # the stem, reading the image whole
    assert np.abs(cpu_values[cpu_made_by[convs[0].input[1]].input[0]]).max() == 64


def _probe(model, names: dict, batch, feed: str = "input") -> list[np.ndarray]:
    """Run ``model`` unoptimized on ``batch`` and return the given inner tensors (name -> ONNX element type), or
    its outputs when ``names`` is empty."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name, dtype in names.items():
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, dtype, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return session.run(list(names) or None, {feed: batch})


def _one_point(nodes: list, scale: np.ndarray, out_type: int):
    """A graph of ``nodes`` from float ``x`` to ``y`` with the scale and both zero points as initializers."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(np.int8(0), "z8"),
             numpy_helper.from_array(np.uint8(0), "zu"), numpy_helper.from_array(np.uint8(127), "cap")]
    graph = helper.make_graph(nodes, "point", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", out_type, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_uint8_activations_are_the_int8_values(quant_calib, qdq_model, wide_stem_calib, quant_val):
    """On real images: each post-ReLU point carried as uint8 zero point 0 and Clip(q, 0, 127) holds exactly what
    TensorRT's int8 ReLU point makes of the same float values (0..127, saturated at 127), and the split stem
    input (an artifact whose stem weights reach 127) gives p - n = q with p <= 127, n <= 128."""
    import onnx
    from onnx import helper

    from edgeres.onnx_model.graph import producers
    from edgeres.quant.cpu import rewrite_for_cpu

    int8, uint8, float32 = onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.FLOAT
    cpu = rewrite_for_cpu(qdq_model, quant_calib.scales)
    values, made_by = _values(cpu), producers(cpu.graph)
    batch = next(quant_val.batches(64))
    s8_input = _probe(qdq_model, {"input_quantized": int8}, batch)[0]
    wide = rewrite_for_cpu(onnx.load(str(wide_stem_calib.qdq_onnx)), quant_calib.scales)
    positive, negative = _probe(wide, {"input_positive": uint8, "input_negative": uint8}, batch)
    assert s8_input.min() < 0 < s8_input.max()  # both signs occur: the split is really exercised
    np.testing.assert_array_equal(positive.astype(np.int16) - negative.astype(np.int16), s8_input.astype(np.int16))
    assert positive.max() <= 127 and negative.max() <= 128

    relu_clips = [n for n in cpu.graph.node if n.op_type == "Clip" and n.name.endswith("_uint8")]
    quantizers = [made_by[c.input[0]] for c in relu_clips]  # Q(conv or Add output) -> Clip(q, 0, 127)
    floats = _probe(cpu, {q.input[0]: float32 for q in quantizers}, batch)
    tensorrt = [helper.make_node("QuantizeLinear", ["x", "s", "z8"], ["q"]),
                helper.make_node("DequantizeLinear", ["q", "s", "z8"], ["d"]), helper.make_node("Relu", ["d"], ["r"]),
                helper.make_node("QuantizeLinear", ["r", "s", "z8"], ["y"])]
    edgeres = [helper.make_node("QuantizeLinear", ["x", "s", "zu"], ["q"]),
               helper.make_node("Clip", ["q", "zu", "cap"], ["y"])]
    saturated = 0
    for q, x in zip(quantizers, floats, strict=True):
        scale = values[q.input[1]]
        s8 = _probe(_one_point(tensorrt, scale, int8), {}, x, feed="x")[0]
        u8 = _probe(_one_point(edgeres, scale, uint8), {}, x, feed="x")[0]
        assert x.min() < 0  # negative values really reach the point
        np.testing.assert_array_equal(u8.astype(np.int16), s8.astype(np.int16), err_msg=q.name)
        saturated += int(s8.max() == 127)
    assert len(quantizers) == 16 and saturated  # TensorRT's saturation at 127 is really exercised


def test_engine_integer_kernels_read_uint8_and_their_pair_sums_fit_int16(quant_calib, wide_stem_calib, engine_model,
                                                                           quant_int8_engine, tmp_path):
    """Every integer kernel of the optimized engine reads uint8 of zero point 0 capped at 127 with int8 weights of at
    most 127, except the stem, which reads the image as uint8 + 128 (0..255) with weights of at most 64: no pair of
    products can leave int16, so the fast u8 x s8 kernels are exact on x86 without VNNI too. The stem of an artifact
    whose weights reach 127 is split instead; left whole, its pair sums could leave int16."""
    import json

    from edgeres.quant import cpu
    from edgeres.quant.cpu import INT16_MAX, integer_kernel_bounds

    values = _values(engine_model)
    allowed = _activation_scales(quant_calib.scales)
    # (activation scale, activation zero point) input positions of each integer kernel
    positions = {"QLinearConv": [(1, 2), (6, 7)], "QLinearAdd": [(1, 2), (4, 5), (6, 7)], "QGemm": [(1, 2)]}
    seen = signed_convs = 0
    for node in engine_model.graph.node:
        for s, z in positions.get(node.op_type, []):
            assert values[node.input[s]].tobytes() in allowed, f"{node.name}: input {s} scale"
            zp = values[node.input[z]]
            assert zp.dtype == np.uint8 and int(zp) in (0, 128), f"{node.name}: input {z} zero point"
            if node.op_type != "QLinearAdd" and z == 2 and int(zp):  # a Conv/Gemm reading the signed form
                assert node.op_type == "QLinearConv" and np.abs(values[node.input[3]]).max() <= 64, node.name
                signed_convs += 1
            seen += 1
        if node.op_type == "QLinearConv":
            assert values[node.input[3]].dtype == np.int8 and not np.any(values[node.input[5]])  # s8 weights, zp 0
    assert seen >= 20 * 2 + 1 and signed_convs == 1
    bounds = integer_kernel_bounds(engine_model)
    assert len(bounds) == 21 and all(b.exact for b in bounds)
    assert sorted(b.input_cap for b in bounds)[-2:] == [127, 255] and max(b.weight_max for b in bounds) <= 127
    assert max(b.pair_max for b in bounds) <= INT16_MAX
    manifest = json.loads(next(quant_int8_engine.glob("*.manifest.json")).read_text())
    assert manifest["backend"]["saturation_free"] and manifest["backend"]["integer_kernels"] == 21
    assert manifest["backend"]["largest_pair_sum"] == max(b.pair_max for b in bounds)
    # What ONNX Runtime runs at load (level "all": NHWC layout transforms on top of the saved graph) keeps the proof.
    import onnx

    from edgeres.backends.onnxrt.loader import write_optimized_model
    from edgeres.engine import resolve

    write_optimized_model(resolve(quant_int8_engine)[0], tmp_path / "runtime.onnx", "all")
    assert all(b.exact for b in integer_kernel_bounds(onnx.load(str(tmp_path / "runtime.onnx"))))
    # An artifact whose stem weights reach 127: split, every pair fits; left whole, 2 x 255 x 127 could not.
    wide = onnx.load(str(wide_stem_calib.qdq_onnx))
    split = cpu.rewrite_for_cpu(wide, quant_calib.scales)
    assert cpu.split_convs(split) == ["/conv1/Conv"] and cpu.split_convs(engine_model) == []
    split_stem = next(b for b in integer_kernel_bounds(split) if b.name == "/conv1/Conv")
    assert split_stem.input_cap == 128 and split_stem.weight_max == 127 and split_stem.exact
    unsplit = cpu.rewrite_for_cpu(wide, quant_calib.scales, split_signed_inputs=False)
    stem = next(b for b in integer_kernel_bounds(unsplit) if b.name == "/conv1/Conv")
    assert stem.input_cap == 255 and stem.weight_max == 127 and not stem.exact


def test_engine_logits_do_not_change_with_onnx_runtimes_precision_mode(quant_int8_engine, quant_val):
    """``session.x64quantprecision`` swaps every u8 x s8 kernel for an exact u8 x u8 one (on every x86 CPU with
    AVX2: it rewrites the weights to uint8). Bit-identical logits with and without it on 1,000 real digits: the
    fast kernels compute the same integers. On an AVX2 machine this is the proof that nothing saturates."""
    import platform

    from edgeres.engine import open_engine

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the precision mode exists on x86 only")
    got = []
    for config in ({}, {"session.x64quantprecision": "1"}):
        engine = open_engine(quant_int8_engine, threads=1)
        engine.runner.loader.session_config.update(config)
        with engine:
            got.append(_logits(lambda b, e=engine: e.runner.infer(b)["logits"], quant_val))
    np.testing.assert_array_equal(got[0], got[1])


def test_int8_engines_open_with_the_cpu_int8_session_settings(quant_int8_engine):
    from edgeres.backends.onnxrt.loader import int8_session_config
    from edgeres.engine import open_engine

    engine = open_engine(quant_int8_engine)
    assert engine.manifest["precision"] == "int8" and engine.manifest["backend"]["saturation_free"]
    assert int8_session_config(saturation_free=True) == {}  # on every CPU: no precision mode
    expected = dict(engine.manifest["backend"].get("session_config", {}))
    assert engine.runner.loader.session_config == expected
    with engine:  # ONNX Runtime accepts the settings
        assert engine.runner.infer(np.zeros((2, 3, 32, 32), np.float32))["logits"].shape == (2, 10)


def test_int8_engine_agrees_with_the_fake_quantized_torch_model(quant_model, quant_calib, quant_int8_engine, quant_val):
    """The issue's bar: the INT8 CPU engine and the fake-quantized torch model agree on >= 99.5% of top-1
    predictions on the val split, and INT8 keeps FP32's accuracy within a few points."""
    import onnx

    from edgeres.engine import open_engine
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.quant.fakequant import fake_quant_model
    from edgeres.tasks.scoring import predict_outputs, torch_predict_fn

    model = load_checkpoint(quant_model).build_model()
    fq = fake_quant_model(model, quant_calib.scales, onnx.load(str(quant_calib.fp32_onnx)))
    with one_torch_thread():
        fp32_logits = predict_outputs(torch_predict_fn(model), quant_val, batch_size=250)
        fq_logits = predict_outputs(torch_predict_fn(fq), quant_val, batch_size=250)
    with open_engine(quant_int8_engine) as engine:
        int8_logits = predict_outputs(lambda b: engine.runner.infer(b)["logits"], quant_val, batch_size=32)

    labels = quant_val.labels
    assert len(labels) == 1000
    agree = float((fq_logits.argmax(1) == int8_logits.argmax(1)).mean())
    fp32_top1 = 100 * float((fp32_logits.argmax(1) == labels).mean())
    int8_top1 = 100 * float((int8_logits.argmax(1) == labels).mean())
    assert agree >= 0.995, f"engine and fake-quant torch agree on only {100 * agree:.1f}% of val images"
    assert fp32_top1 >= 90.0
    assert abs(fp32_top1 - int8_top1) <= 3.0, f"FP32 {fp32_top1:.1f}% vs INT8 {int8_top1:.1f}%"
    assert not np.allclose(fq_logits, fp32_logits, atol=1e-3)  # the fake-quant model really is quantized


def _session(model, level: str = "all"):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {"off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _logits(run, val) -> np.ndarray:
    return np.concatenate([run(batch) for batch in val.batches(25)])


@pytest.fixture(scope="module")
def qdq_reference_logits(qdq_model, quant_val) -> np.ndarray:
    """The Q/DQ artifact's own arithmetic (TensorRT's semantics): every QuantizeLinear / DequantizeLinear
    evaluated as written, no fusion, on the 1,000 val digits."""
    session = _session(qdq_model, "off")
    return _logits(lambda b: session.run(None, {"input": b})[0], quant_val)


def test_relus_run_on_the_uint8_values_and_change_no_value(quant_calib, qdq_model, quant_val, monkeypatch):
    """ReLU as Clip(q_u8, min=128): bit-identical logits to the float DequantizeLinear -> Relu -> QuantizeLinear
    step it replaces, on real images."""
    from edgeres.quant import cpu

    integer = cpu.rewrite_for_cpu(qdq_model, quant_calib.scales)
    values = _values(integer)
    ops = [n.op_type for n in integer.graph.node]
    assert ops.count("Relu") == 1  # 17 ReLUs; the last feeds the float average pool
    relu_clips = [n for n in integer.graph.node if n.op_type == "Clip" and n.name.endswith("_uint8")]
    assert len(relu_clips) == 16
    for node in relu_clips:  # ReLU and TensorRT's saturation at 127 in one integer step
        low, high = values[node.input[1]], values[node.input[2]]
        assert low.dtype == high.dtype == np.uint8 and (int(low), int(high)) == (0, 127), node.name
    monkeypatch.setattr(cpu, "_integer_relus", lambda graph: None)
    float_relu = cpu.rewrite_for_cpu(qdq_model, quant_calib.scales)
    assert [n.op_type for n in float_relu.graph.node].count("Relu") == 17
    got = [_logits(lambda b, s=_session(m): s.run(None, {"input": b})[0], quant_val) for m in (integer, float_relu)]
    np.testing.assert_array_equal(got[0], got[1])


# ---- the OpenVINO INT8 engine ----

@pytest.fixture(scope="module")
def openvino_engine(tmp_path_factory, qdq_model, quant_model):
    """(engine file, build facts): the OpenVINO form of the Q/DQ artifact, written and checked for this CPU."""
    from edgeres.backends.openvino.loader import write_int8_engine  # openvino is a dev dependency: never skipped
    from edgeres.models.checkpoint import load_checkpoint

    h, w = load_checkpoint(quant_model).config.preprocess.input_size
    engine_file = tmp_path_factory.mktemp("openvino_engine") / "r18-int8.onnx"
    return engine_file, write_int8_engine(qdq_model, engine_file, (1, 3, h, w), threads=1)


def test_openvino_engine_runs_every_conv_and_gemm_as_an_integer_kernel(openvino_engine, quant_model):
    from edgeres.backends.openvino.loader import ModelLoader, float_compute_layers, runtime_layers
    from edgeres.models.checkpoint import load_checkpoint

    engine_file, facts = openvino_engine
    assert facts["integer_layers"] == 21 and facts["inference_precision"] == "f32"
    h, w = load_checkpoint(quant_model).config.preprocess.input_size
    compiled = ModelLoader(engine_file, threads=1).compile((4, 3, h, w))  # another batch size: still integer
    assert float_compute_layers(compiled) == []
    kinds = [kind for _, kind, precision in runtime_layers(compiled) if precision in ("i8", "u8")]
    assert kinds.count("Convolution") == 20 and kinds.count("FullyConnected") == 1


def test_openvino_engine_keeps_every_quantized_value_of_the_artifact(qdq_model, openvino_engine):
    """Same int8 weights (what the artifact's Q nodes produce), same per-channel and activation scales, zero
    points 0: the OpenVINO form only stores the weights as integers, repeats the MaxPool's output Q on its input
    (exact: max commutes with a monotonic quantizer), carries non-negative points as uint8 behind a Clip at 127
    steps (the ReLU before it folded into it), and reads the stem's signed input whole, quantized as integer-valued
    floats (scale 1, dequantized at the artifact's scale); every integer kernel's pair sums fit in int16."""
    import onnx

    from edgeres.quant.cpu import integer_kernel_bounds
    from edgeres.quant.signs import nonnegative_tensors

    engine = onnx.load(str(openvino_engine[0]))
    qdq_values, engine_values = _values(qdq_model), _values(engine)
    weight_qs = [n for n in qdq_model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in qdq_values]
    for q in weight_qs:
        w, scale, axis = qdq_values[q.input[0]], qdq_values[q.input[1]], _attr(q, "axis", 1)
        shape = [1] * w.ndim
        shape[axis] = -1
        expected = np.clip(np.rint(w / scale.reshape(shape)), -128, 127).astype(np.int8)
        stored = engine_values.get(q.input[0] + "_int8")
        if stored is None:  # the stem: [w, -w] for the split input
            stored, negated = np.split(engine_values[q.input[0] + "_int8_split"], 2, axis=1)
            np.testing.assert_array_equal(negated, -expected)
        np.testing.assert_array_equal(stored, expected)
        assert engine_values[q.input[1]].tobytes() == scale.tobytes()
    artifact_scales = {v.tobytes() for k, v in qdq_values.items() if k.endswith("_scale")}
    qdq_nodes = [n for n in engine.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert {n.input[1] for n in qdq_nodes} <= set(engine_values)
    nonnegative = nonnegative_tensors(engine.graph)
    integer_valued = [n for n in qdq_nodes if n.input[0] == "input_integers"]
    assert [n.op_type for n in integer_valued] == ["QuantizeLinear"] and float(engine_values[
        integer_valued[0].input[1]]) == 1.0  # Clip(Round(input / s), -128, 127): then Q at scale 1 is exact
    for node in qdq_nodes:
        if node in integer_valued:
            continue
        assert engine_values[node.input[1]].tobytes() in artifact_scales, node.name
        zp = engine_values[node.input[2]]
        assert not np.any(zp), node.name
        if zp.dtype == np.uint8 and node.op_type == "QuantizeLinear":  # unsigned: read only from values >= 0
            assert node.input[0] in nonnegative, node.name
        else:
            assert zp.dtype == np.int8 or node.op_type == "DequantizeLinear", node.name
    ops = [n.op_type for n in engine.graph.node]
    # Each ReLU is folded into the Clip at 127 steps that reads it (the same values); the last block's is read by
    # the average pool and stays. No point is added at the residual Adds.
    assert ops.count("Relu") == 1 and ops.count("Add") == 8
    caps = [n for n in engine.graph.node if n.op_type == "Clip" and n.input[1] in engine_values
            and float(engine_values[n.input[1]]) == 0.0]
    assert len(caps) >= 16
    assert integer_kernel_bounds(engine) and all(b.exact for b in integer_kernel_bounds(engine))
    assert len(integer_kernel_bounds(engine)) == 21  # layer1's first conv reads the pooled uint8 values
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in engine_values for n in engine.graph.node)
    pools = [n.output[0] for n in engine.graph.node if n.op_type == "MaxPool"]
    assert pools and not any(n.op_type == "QuantizeLinear" and n.input[0] in pools for n in engine.graph.node)


def _assert_guarantee(logits: np.ndarray, reference: np.ndarray, level: str, what: str) -> None:
    """``logits`` keep the bounds the guarantee ``level`` promises against the Q/DQ reference (MEASURED_BOUNDS)."""
    from edgeres.backends.cpu_int8 import MEASURED_BOUNDS

    bound, spread = MEASURED_BOUNDS[level], float(reference.std())
    diff = np.abs(logits - reference)
    top2 = np.sort(reference, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > bound["tie"] * spread  # images that are not near-ties of the reference
    agree = float((logits.argmax(1) == reference.argmax(1))[decided].mean())
    print(f"{what} ({level}): top-1 agreement {agree:.4f} on the {decided.sum()} images that are not near-ties, "
          f"{float((logits.argmax(1) == reference.argmax(1)).mean()):.4f} on all; |dlogit| max "
          f"{diff.max() / spread:.3f} and 99.9th percentile {np.quantile(diff, 0.999) / spread:.4f} of the logits' "
          f"spread {spread:.3f}")
    assert decided.mean() >= 0.99
    assert agree >= bound["top1_agreement"], f"{what}: top-1 agreement {agree:.4f} < {bound['top1_agreement']}"
    assert np.quantile(diff, 0.999) <= bound["q999"] * spread
    assert diff.max() <= bound["max"] * spread


def test_openvino_engine_matches_the_qdq_arithmetic_on_real_images(openvino_engine, qdq_reference_logits, quant_val,
                                                                   quant_int8_engine):
    """Each engine keeps the guarantee that applies on this CPU (``backends.cpu_int8.guarantee``): the OpenVINO
    engine reproduces the Q/DQ artifact's arithmetic (same top-1 on every one of the 1,000 val digits that is not a
    near-tie; the int8 kernels round
    where their fused float epilogue ends, the reference at each Q node, so an activation can differ by one LSB),
    on AVX2, AVX-512, VNNI and AMX alike; the ONNX Runtime engine, which rounds once more before each residual Add,
    stays within its own bound and further from the artifact."""
    import onnx

    from edgeres.backends.cpu_int8 import EXACT
    from edgeres.backends.openvino.loader import ModelLoader
    from edgeres.backends.openvino.runner import OpenVinoRunner
    from edgeres.engine import int8_guarantee, open_engine
    from edgeres.quant.cpu import integer_kernel_bounds

    engine_file = openvino_engine[0]
    with OpenVinoRunner(ModelLoader(engine_file, threads=1)) as runner:
        ov_logits = _logits(lambda b: runner.infer(b)["logits"], quant_val)
        one_by_one = np.concatenate([runner.infer(b[i:i + 1])["logits"] for b in quant_val.batches(25)
                                     for i in range(len(b))][:50])
    with open_engine(quant_int8_engine, threads=1) as engine:
        ort_logits = _logits(lambda b: engine.runner.infer(b)["logits"], quant_val)
        ort_level = int8_guarantee(engine.manifest)["level"]
    saturation_free = all(b.exact for b in integer_kernel_bounds(onnx.load(str(engine_file))))
    ov_manifest = {"precision": "int8", "backend": {"name": "openvino", "saturation_free": saturation_free}}
    ov_level = int8_guarantee(ov_manifest)["level"]
    assert ov_level == EXACT  # engines of this form are exact on every x86 ISA
    _assert_guarantee(ov_logits, qdq_reference_logits, ov_level, "OpenVINO engine")
    _assert_guarantee(ort_logits, qdq_reference_logits, ort_level, "ONNX Runtime engine")
    ref = qdq_reference_logits
    assert np.abs(ov_logits - ref).mean() <= np.abs(ort_logits - ref).mean()
    np.testing.assert_allclose(one_by_one, ov_logits[:50], rtol=0, atol=1e-5)  # batch size changes nothing


def test_openvino_engine_keeps_its_guarantee_with_onednn_capped_at_avx2(openvino_engine, qdq_reference_logits,
                                                                        quant_val, tmp_path):
    """oneDNN without VNNI, emulated on any x86 CPU: ``ONEDNN_MAX_CPU_ISA=AVX2`` (read when oneDNN starts, so in a
    subprocess) makes every int8 convolution a jit_avx2 kernel (vpmaddubsw, saturating 16-bit pair sums). The
    engine keeps the same guarantee there, with the same top-1 as this CPU's own kernels. (The engine form before
    the uint8 zero-point-0 points differed from the reference on 13 of these 1,000 digits under this cap.)"""
    import json
    import platform
    import subprocess
    import sys
    import textwrap

    from edgeres.backends.cpu_int8 import EXACT
    from edgeres.backends.openvino.loader import ModelLoader
    from edgeres.backends.openvino.runner import OpenVinoRunner

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("ONEDNN_MAX_CPU_ISA=AVX2 is an x86 cap")
    images = np.concatenate(list(quant_val.batches(250)))
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import json, numpy as np
        from pathlib import Path
        from edgeres.backends.openvino.loader import ModelLoader, runtime_kernels
        from edgeres.backends.openvino.runner import OpenVinoRunner
        loader = ModelLoader(Path({str(openvino_engine[0])!r}), threads=1)
        images = np.load({str(tmp_path / "images.npy")!r})
        with OpenVinoRunner(loader) as runner:
            logits = np.concatenate([runner.infer(images[i:i + 25])["logits"] for i in range(0, len(images), 25)])
        np.save({str(tmp_path / "avx2.npy")!r}, logits)
        compiled = loader.compile((1, *images.shape[1:]))
        print(json.dumps(sorted({{k for kind, k, _ in runtime_kernels(compiled) if kind == "Convolution"}})))
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    kernels = json.loads(proc.stdout.strip().splitlines()[-1])
    assert kernels and all("avx2" in k for k in kernels), kernels  # the cap really took: AVX2 int8 kernels only
    capped = np.load(tmp_path / "avx2.npy")
    _assert_guarantee(capped, qdq_reference_logits, EXACT, "OpenVINO engine, oneDNN capped at AVX2")
    with OpenVinoRunner(ModelLoader(openvino_engine[0], threads=1)) as runner:
        native = _logits(lambda b: runner.infer(b)["logits"], quant_val)
    np.testing.assert_array_equal(capped.argmax(1), native.argmax(1))
    print(f"bit-identical to this CPU's kernels: {np.array_equal(capped, native)}")


def test_openvino_integer_check_fails_on_a_float_conv(quant_calib, openvino_engine, tmp_path, quant_model):
    """The build's check reads OpenVINO's execution graph: a Conv left without its input Q/DQ runs in float
    and is named."""
    import onnx

    from edgeres.backends.openvino.loader import ModelLoader, check_integer_kernels
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.onnx_model.graph import producers

    shape = (1, 3, *load_checkpoint(quant_model).config.preprocess.input_size)
    with pytest.raises(EdgeresError, match=r"21 Conv/Gemm layer\(s\) would run in float in OpenVINO"):
        check_integer_kernels(ModelLoader(quant_calib.fp32_onnx, threads=1).compile(shape))
    model = onnx.load(str(openvino_engine[0]))
    made_by = producers(model.graph)
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and "layer3.1/conv1" in n.name)
    conv.input[0] = made_by[made_by[conv.input[0]].input[0]].input[0]  # DQ <- Q <- float tensor: bypass both
    crafted = tmp_path / "one-float-conv.onnx"
    onnx.save(model, str(crafted))
    with pytest.raises(EdgeresError, match=r"1 Conv/Gemm layer\(s\).*layer3\.1/conv1"):
        check_integer_kernels(ModelLoader(crafted, threads=1).compile(shape))


def test_build_backend_openvino_through_the_cli(tmp_path, quant_model, quant_calib, quant_digits, quant_int8_engine):
    """edgeres build --backend openvino: manifest, eval and predict through the product; FP32 is refused."""
    import json

    from helpers import assert_user_error, run_cli

    out = tmp_path / "r18-ov"
    proc = run_cli("build", "--model", quant_model, "--precision", "int8", "--backend", "openvino",
                   "--calib", quant_calib.folder, "--out", out)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "r18-ov.manifest.json").read_text())
    assert manifest["backend"]["name"] == "openvino" and manifest["precision"] == "int8"
    assert manifest["calibration"]["method"] == "entropy"
    ov = json.loads(run_cli("eval", "--engine", out, "--data", quant_digits, "--json").stdout)
    ort = json.loads(run_cli("eval", "--engine", quant_int8_engine, "--data", quant_digits, "--json").stdout)
    # The same Q/DQ arithmetic: top-1 within half a point of the ONNX Runtime INT8 engine on 1,000 real digits.
    assert abs(ov["top1"] - ort["top1"]) <= 0.5, (ov["top1"], ort["top1"])
    agree = np.mean(np.asarray(ov["predictions"]) == np.asarray(ort["predictions"]))
    assert agree >= 0.99
    image = next((quant_digits / "val" / "3").glob("*.png"))
    pred = run_cli("predict", image, "--engine", out, "--json")
    assert pred.returncode == 0 and json.loads(pred.stdout)["predictions"][0]["label"] in [str(i) for i in range(10)]
    refused = run_cli("build", "--model", quant_model, "--precision", "fp32", "--backend", "openvino",
                      "--out", tmp_path / "fp32-ov")
    assert_user_error(refused, "--backend openvino builds INT8 engines only", "--backend onnxruntime")

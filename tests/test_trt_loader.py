"""The loader's CPU side: ONNX facts, FP16-typed ONNX for TensorRT 11, parser-error and layer reports,
engine-byte checks, and the TensorRT manifest checks before anything is deserialized."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_trt import ORIN_10_3, engine_folder

from edgeres.backends.trt import loader
from edgeres.backends.trt.runner import TensorRTRunner
from edgeres.engine import EngineMismatchError, open_engine
from edgeres.errors import EdgeresError


def tiny_onnx(path, qdq: bool = False):
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm on (N, 3, 8, 8), optionally with Q/DQ on the conv."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(4, np.float32), "b"),
        numpy_helper.from_array(rng.normal(size=(4, 5)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(5, np.float32), "fc_b"),
    ]
    nodes, x = [], "input"
    if qdq:
        inits += [
            numpy_helper.from_array(np.array(0.02, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "zp"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["input", "s", "zp"], ["q"], name="q_in"),
            helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"], name="dq_in"),
        ]
        x = "dq"
    nodes += [
        helper.make_node("Conv", [x, "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnx_facts(tmp_path):
    path = tiny_onnx(tmp_path / "m.onnx")
    assert loader.onnx_input(path) == ("input", ["batch", 3, 8, 8])
    nodes, tensors = loader.onnx_names(path)
    assert nodes == ["conv1", "relu", "pool", "flatten", "fc"]
    assert {"input", "c", "r", "logits", "w"} <= tensors


def test_fp16_onnx_for_tensorrt_11(tmp_path):
    pytest.importorskip("onnxconverter_common", reason="onnxconverter-common is in the 'tensorrt' extra")
    import onnx
    from onnx import TensorProto

    src = tiny_onnx(tmp_path / "m.onnx")
    dst = tmp_path / "m.fp16.onnx"
    loader.fp16_onnx(src, dst)
    model = onnx.load(str(dst))
    onnx.checker.check_model(model)
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert types["w"] == TensorProto.FLOAT16 and types["fc_w"] == TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # keep_io_types
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    try:
        got = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    except Exception as exc:  # some ONNX Runtime CPU builds have no FP16 kernel for an op
        pytest.skip(f"ONNX Runtime cannot run this FP16 graph on the CPU: {str(exc)[:100]}")
    np.testing.assert_allclose(got, ref, atol=0.05, rtol=0.05)


def test_parser_errors_name_the_node_on_every_version():
    node_names = ["conv1", "relu", "pool"]
    v86 = [{"desc": "Unsupported ONNX data type: UINT8 (2)", "node": 1, "node_name": None, "node_operator": None}]
    assert loader.format_parser_errors(v86, node_names) == "node relu: Unsupported ONNX data type: UINT8 (2)"
    v10 = [
        {"desc": "No importer registered for op: Foo", "node": 2, "node_name": "foo_7", "node_operator": "Foo"},
        {"desc": "graph-level error", "node": -1, "node_name": "", "node_operator": ""},
    ]
    assert loader.format_parser_errors(v10, node_names) == (
        "node foo_7 (Foo): No importer registered for op: Foo; graph: graph-level error"
    )


def _layers_json(io_key: str, conv_type: str) -> str:
    def io(text):
        return [{"Name": "t", io_key: text}]

    return json.dumps(
        {
            "Layers": [
                {
                    "Name": "conv1 + relu",
                    "LayerType": "CaskConvolution",
                    "Inputs": io(conv_type),
                    "Outputs": io(conv_type),
                },
                {
                    "Name": "layer1.0.conv1",
                    "LayerType": "CaskConvolution",
                    "Inputs": io("Row major linear FP32"),
                    "Outputs": io("Row major linear FP32"),
                },
                {"Name": "pool", "LayerType": "CaskPooling", "Inputs": io("Row major linear FP32"), "Outputs": io("x")},
                {
                    "Name": "fc",
                    "LayerType": "CaskGemmMatrixMultiply",
                    "Inputs": io(conv_type),
                    "Outputs": io(conv_type),
                },
            ]
        }
    )


def test_layer_report_names_layers_off_the_asked_precision():
    info = _layers_json("Format/Datatype", "Channel major FP16 format where channel % 8 == 0")  # 8.6 / 10.x
    report = loader.summarize_layers(info, "fp16")
    assert report["known"] and report["compute_layers"] == 3 and report["layers"] == 4
    assert report["off_precision"] == [{"name": "layer1.0.conv1", "type": "CaskConvolution", "precision": "fp32"}]
    info11 = _layers_json("DataType", "Int8")  # 11.x split the field
    report = loader.summarize_layers(info11, "int8")
    assert [x["name"] for x in report["off_precision"]] == ["layer1.0.conv1"]


def test_layer_report_unknown_without_details():
    report = loader.summarize_layers(json.dumps({"Layers": ["conv1", "fc"]}), "int8")
    assert report == {
        "layers": 2,
        "compute_layers": 0,
        "expected": "int8",
        "off_precision": [],
        "dla_layers": 0,
        "known": False,
    }
    assert loader.summarize_layers("not json", "fp32")["known"] is False


def test_describe_build_lines():
    manifest = {
        "backend": {
            "build_seconds": 12.5,
            "dla_core": None,
            "warnings": ["no fast INT8"],
            "trtexec": "trtexec --onnx=m.source.onnx --int8",
            "layers": loader.summarize_layers(_layers_json("DataType", "Int8"), "int8"),
        }
    }
    lines = loader.describe_build(manifest)
    assert lines[0] == "TensorRT build 12.5 s"
    assert "1 of 3 conv/gemm layers run in another precision than int8: layer1.0.conv1 (fp32)" in lines[1]
    assert lines[2] == "warning: no fast INT8"
    assert lines[-1].endswith("trtexec --onnx=m.source.onnx --int8")


def test_timing_cache_lives_next_to_the_engines(tmp_path):
    path = loader.default_timing_cache(tmp_path / "engines", "10.3.0", "8.7")
    assert path == tmp_path / "engines" / "timing.trt10.3.0.sm8.7.cache"


def test_load_plan_only_loads_matching_bytes(tmp_path):
    folder = engine_folder(tmp_path)
    plan = folder / "r18-trt.plan"
    manifest = json.loads((folder / "r18-trt.manifest.json").read_text())
    assert loader.load_plan(plan, manifest["engine"]["sha256"]) == plan.read_bytes()
    with pytest.raises(EdgeresError, match="no sha256"):
        loader.load_plan(plan, None)
    plan.write_bytes(plan.read_bytes() + b"x")
    with pytest.raises(EdgeresError, match="do not match its manifest"):
        loader.load_plan(plan, manifest["engine"]["sha256"])


def test_runner_refuses_changed_bytes_before_importing_tensorrt(tmp_path):
    folder = engine_folder(tmp_path)
    (folder / "r18-trt.plan").write_bytes(b"replaced")
    with pytest.raises(EdgeresError, match="do not match its manifest"):
        TensorRTRunner(folder / "r18-trt.plan").activate()
    alone = tmp_path / "alone.plan"
    alone.write_bytes(b"x")
    with pytest.raises(EdgeresError, match="has no manifest"):
        TensorRTRunner(alone).activate()


def test_open_engine_passes_on_the_machine_it_was_built_for(tmp_path):
    engine = open_engine(engine_folder(tmp_path), current=ORIN_10_3)
    assert isinstance(engine.runner, TensorRTRunner) and engine.runner.max_batch == 32


def test_engine_built_elsewhere_gets_every_difference_and_the_rebuild_command(tmp_path):
    folder = engine_folder(tmp_path, backend={"dla_core": 1})
    here = {"backend_version": "8.6.2", "gpu": "Orin", "compute_capability": "8.7", "l4t": "36.3.0", "dla_cores": 2}
    with pytest.raises(EngineMismatchError) as err:
        open_engine(folder, current=here)
    text = str(err.value)
    assert "built with TensorRT 10.3.0, this machine has 8.6.2" in text
    assert "built on L4T 36.4.0 (JetPack), this machine has L4T 36.3.0" in text
    assert "rebuild it with: edgeres build --backend tensorrt" in text


class TimingCacheConfig:
    """An IBuilderConfig double for the timing-cache calls, answering as TensorRT's bindings do:
    ``create_timing_cache`` gives None for bytes that are not a timing cache, ``set_timing_cache`` takes the cache
    by reference (None is a TypeError in pybind11) and returns False for a cache from another version or GPU."""

    def __init__(self):
        self.attached = None

    def create_timing_cache(self, data: bytes):
        if data and not data.startswith(b"TCACHE"):
            return None
        return {"data": bytes(data)}

    def set_timing_cache(self, cache, ignore_mismatch):
        if cache is None:
            raise TypeError("set_timing_cache(): incompatible function arguments")
        if cache["data"].startswith(b"TCACHE-other-gpu"):
            return False
        self.attached = cache
        return True


def test_corrupt_timing_cache_gives_a_warning_and_a_fresh_cache(tmp_path):
    path = tmp_path / "timing.cache"
    path.write_bytes(b"\x00\x01 truncated garbage")
    config = TimingCacheConfig()
    warnings, cache = loader._load_timing_cache(config, path)
    assert warnings == [
        f"timing cache {path} is not a TensorRT timing cache (corrupt or truncated); started a new one "
        "(it is rewritten after this build)"
    ]
    assert config.attached is cache and cache == {"data": b""}


def test_timing_cache_from_another_gpu_or_version_is_replaced(tmp_path):
    path = tmp_path / "timing.cache"
    path.write_bytes(b"TCACHE-other-gpu")
    config = TimingCacheConfig()
    warnings, _ = loader._load_timing_cache(config, path)
    assert "from another TensorRT version or GPU; started a new one" in warnings[0]
    assert config.attached == {"data": b""}
    path.write_bytes(b"TCACHE-this-gpu")
    assert loader._load_timing_cache(config, path) == ([], {"data": b"TCACHE-this-gpu"})
    assert loader._load_timing_cache(config, None) == ([], None)


class FakeTrtModule:
    """Just enough of the tensorrt module for the logger and the DLA count (no TensorRT here)."""

    class ILogger:
        ERROR, INTERNAL_ERROR, WARNING = 1, 0, 2

        def __init__(self):
            pass

    def __init__(self, dla_cores: int = 2):
        self.loggers = []
        self.dla_cores = dla_cores

    def Builder(self, logger):
        raise AssertionError("a Builder is not needed to count DLA cores")

    def Runtime(self, logger):
        self.loggers.append(logger)
        return type("Runtime", (), {"num_DLA_cores": self.dla_cores})()


def test_one_logger_for_every_builder_and_runtime(monkeypatch):
    monkeypatch.setattr(loader, "_LOGGER", None)
    trt = FakeTrtModule()
    first = loader.shared_logger(trt)
    assert loader.shared_logger(trt) is first
    mark = len(first.errors)
    first.log(trt.ILogger.ERROR, "deserialization failed: version tag mismatch")
    first.log(trt.ILogger.WARNING, "only printed")
    assert loader.errors_since(first, mark) == "deserialization failed: version tag mismatch"
    assert loader.errors_since(first, len(first.errors)) == ""


def test_dla_cores_come_from_a_runtime_with_the_shared_logger(monkeypatch):
    import edgeres.device.jetson

    monkeypatch.setattr(loader, "_LOGGER", None)
    monkeypatch.setattr(edgeres.device.jetson, "jetson_facts", lambda: {"l4t": "36.4.0"})
    trt = FakeTrtModule(dla_cores=2)
    assert loader.dla_core_count(trt) == 2
    assert trt.loggers == [loader.shared_logger(trt)]
    monkeypatch.setattr(edgeres.device.jetson, "jetson_facts", lambda: None)
    assert loader.dla_core_count(trt) == 0


class Layer:
    def __init__(self, name, on_dla):
        self.name, self.on_dla = name, on_dla


def test_dla_placement_and_fallback_warning():
    layers = [
        Layer("conv1", True),
        Layer("relu", True),
        Layer("pool", True),
        Layer("flatten", False),
        Layer("fc", False),
    ]
    network = type("Network", (), {"num_layers": len(layers), "get_layer": lambda self, i: layers[i]})()
    config = type("Config", (), {"can_run_on_DLA": lambda self, layer: layer.on_dla})()
    dla = loader.dla_placement(network, config)
    assert dla == {"network_layers": 5, "gpu_layers": ["flatten", "fc"]}
    inspector = loader.summarize_layers(
        json.dumps(
            {
                "Layers": [
                    {"Name": "{ForeignNode[conv1...pool]}", "LayerType": "DLA", "Inputs": [], "Outputs": []},
                    {"Name": "fc", "LayerType": "CaskGemmMatrixMultiply", "Inputs": [], "Outputs": []},
                ]
            }
        ),
        "fp16",
    )
    warnings = loader.dla_warnings(dla)
    assert warnings == [
        "2 of 5 layers fall back from DLA to the GPU (e.g. flatten, fc); they run on the GPU, not on DLA"
    ]
    assert "the whole engine runs on the GPU" in loader.dla_warnings({"network_layers": 2, "gpu_layers": ["a", "b"]})[0]
    assert loader.dla_warnings({"network_layers": 2, "gpu_layers": []}) == []
    lines = loader.describe_build(
        {
            "backend": {
                "build_seconds": 3.0,
                "dla_core": 0,
                "dla": dla,
                "layers": inspector,
                "batch_profile": {"min": 4, "opt": 4, "max": 4},
                "warnings": warnings,
                "trtexec": "trtexec ...",
            }
        }
    )
    assert "DLA core 0: one fixed batch of 4 (DLA has no dynamic shapes" in lines[2]
    assert lines[3] == "3 of 5 network layers can run on DLA, 2 on the GPU (builder's can_run_on_DLA)"
    assert lines[4] == "engine inspector: 1 of 2 engine layers name DLA in their type or tactic"
    assert lines[5].startswith("warning: 2 of 5 layers fall back from DLA")

"""Backend loaders and runners: activate / infer / deactivate, context managers, the TensorRT slot, ONNX file checks."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edgeres.errors import EdgeresError, MissingDependencyError

pytest_plugins = ["fixtures_models"]

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def digit_batch(digits_data):
    """Six real validation digits and two real photos, preprocessed for the 32x32 trained model."""
    from engine_helpers import val_digit_files

    from edgeres.config import PreprocessConfig
    from edgeres.data.samples import reference_images
    from edgeres.processing import preprocess, read_image

    images = [read_image(p) for p, _ in val_digit_files(digits_data, per_class=1)[:6]]
    images += reference_images(n_digits=0, photos=("astronaut", "chelsea"))
    return preprocess(images, PreprocessConfig(input_size=(32, 32)))


class CountingLoader:
    """Wraps a loader and counts how often the runner asked it to load."""

    def __init__(self, loader):
        self.loader = loader
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.loader()


def _check_lifecycle(runner, loader: CountingLoader, batch: np.ndarray) -> np.ndarray:
    with pytest.raises(EdgeresError, match=f"{runner.name} runner is not active"):
        runner.infer(batch)
    runner.deactivate()  # deactivating an inactive runner is a no-op
    with runner as active:
        assert active is runner and runner.is_active
        runner.activate()  # already active: must not load again
        assert loader.calls == 1
        assert runner.input_names == ["input"] and runner.output_names == ["logits"]
        out = runner.infer(batch)
        assert list(out) == ["logits"]
        assert out["logits"].shape == (len(batch), 10) and out["logits"].dtype == np.float32
        assert runner.last_inference_time is not None and runner.last_inference_time > 0
        by_name = runner.infer({"input": batch})["logits"]
        np.testing.assert_array_equal(by_name, out["logits"])
    assert not runner.is_active
    with pytest.raises(EdgeresError, match="not active"):
        runner.infer(batch)
    runner.activate()  # a runner can be activated again after deactivation
    assert loader.calls == 2 and runner.is_active
    again = runner.infer(batch)["logits"]
    runner.deactivate()
    np.testing.assert_allclose(again, out["logits"], rtol=0, atol=1e-5)
    return out["logits"]


def test_torch_and_onnxruntime_runners_share_one_lifecycle(trained_checkpoint, trained_engine, digit_batch):
    from engine_helpers import engine_files

    from edgeres.backends.onnxrt.loader import SessionLoader
    from edgeres.backends.onnxrt.runner import OnnxRuntimeRunner
    from edgeres.backends.torch.loader import ModelLoader
    from edgeres.backends.torch.runner import TorchRunner

    torch_loader = CountingLoader(ModelLoader(trained_checkpoint))
    torch_runner = TorchRunner(torch_loader)
    want = _check_lifecycle(torch_runner, torch_loader, digit_batch)
    assert torch_runner.model is None  # deactivate drops the model

    ort_loader = CountingLoader(SessionLoader(engine_files(trained_engine)[0]))
    ort_runner = OnnxRuntimeRunner(ort_loader)
    got = _check_lifecycle(ort_runner, ort_loader, digit_batch)
    assert ort_runner.session is None and ort_runner.providers == []

    assert np.abs(got - want).max() < 1e-3
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


def test_runner_refuses_batch_above_max(trained_engine, digit_batch):
    from engine_helpers import engine_files

    from edgeres.backends.onnxrt.loader import SessionLoader
    from edgeres.backends.onnxrt.runner import OnnxRuntimeRunner

    with OnnxRuntimeRunner(SessionLoader(engine_files(trained_engine)[0], threads=1), max_batch=2) as runner:
        assert runner.providers == ["CPUExecutionProvider"]
        assert runner.infer(digit_batch[:2])["logits"].shape == (2, 10)
        with pytest.raises(EdgeresError, match=r"batch 3 is above the engine's maximum batch 2; rebuild with a larger "
                                               r"--max-batch"):
            runner.infer(digit_batch[:3])


def _tensorrt_engine_folder(folder):
    """An engine folder as a TensorRT build on a Jetson Orin would leave it: a plan and its manifest.

    The plan's bytes are not a real engine: without TensorRT nothing may try to deserialize them.
    """
    import json

    from edgeres.manifest import SCHEMA_VERSION
    from edgeres.models.checkpoint import file_sha256

    plan = folder / "r18-fp16.plan"
    plan.write_bytes(b"serialized engine bytes")
    manifest = {
        "schema_version": SCHEMA_VERSION, "task": "classify", "arch": "resnet18", "class_names": ["a", "b"],
        "input": {"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32", "max_batch": 8},
        "preprocess": {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3},
        "precision": "fp16",
        "engine": {"file": plan.name, "sha256": file_sha256(plan), "size": plan.stat().st_size},
        "backend": {"name": "tensorrt", "version": "10.3.0"},
        "device": {"gpu": "Orin", "compute_capability": "8.7"},
    }
    (folder / "r18-fp16.manifest.json").write_text(json.dumps(manifest))
    return plan


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_tensorrt_slot_says_not_installed(tmp_path):
    from edgeres.backends.trt.runner import TensorRTRunner

    runner = TensorRTRunner(_tensorrt_engine_folder(tmp_path), max_batch=8)
    expected = r"'tensorrt' is not installed .*pip install 'edgeres\[tensorrt\]'"
    with pytest.raises(MissingDependencyError, match=expected), runner:
        pass
    assert not runner.is_active
    with pytest.raises(EdgeresError, match="not active"):
        runner.infer(np.zeros((1, 3, 32, 32), np.float32))


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_open_engine_dispatches_tensorrt_manifests_to_the_tensorrt_slot(tmp_path):
    """An engine whose manifest says TensorRT gets the TensorRT runner, which explains what is missing."""
    from edgeres.backends.trt.runner import TensorRTRunner
    from edgeres.engine import open_engine

    _tensorrt_engine_folder(tmp_path)
    on_orin = {"backend_version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "cpu_isa": "aarch64-neon"}
    engine = open_engine(tmp_path, current=on_orin)
    assert isinstance(engine.runner, TensorRTRunner) and engine.runner.max_batch == 8
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgeres\[tensorrt\]'"), engine:
        pass


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_auto_backend_is_onnxruntime_without_tensorrt():
    from edgeres.build import pick_backend

    assert pick_backend("auto") == "onnxruntime"
    assert pick_backend("tensorrt") == "tensorrt"  # an explicit choice is kept; the build then explains
    assert pick_backend("openvino") == "openvino"  # auto picks it only for INT8 (tests/test_cpu_int8.py)
    with pytest.raises(EdgeresError, match="unknown backend 'tflite'; accepted: auto, onnxruntime, openvino, tensorrt"):
        pick_backend("tflite")


def test_providers_and_levels_are_checked():
    import onnxruntime as ort

    from edgeres.backends.onnxrt.loader import graph_optimization_level, resolve_providers

    assert resolve_providers(None) == ["CPUExecutionProvider"]
    assert resolve_providers(["cpu"]) == ["CPUExecutionProvider"]
    with pytest.raises(EdgeresError, match=r"requested provider NoSuchExecutionProvider; available: .*CPUExecution"):
        resolve_providers(["NoSuchExecutionProvider"])
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(EdgeresError, match="requested provider CUDAExecutionProvider; available: "):
            resolve_providers(["cuda"])
    assert graph_optimization_level("all") == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with pytest.raises(EdgeresError, match="unknown optimization level 'max'; accepted: disabled, basic"):
        graph_optimization_level("max")


# --- ONNX files are checked before a session reads them -------------------------------------------------------------

def _tiny_onnx(path, external: bool = False) -> None:
    """y = x @ W with a 64x4 weight; with ``external`` the weight lives in ``weights.bin`` beside the model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(256, dtype=np.float32).reshape(64, 4) / 256, name="W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=0)
    else:
        onnx.save_model(model, str(path))


def _point_external_data(path, location: str) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(path))


def test_session_loader_runs_a_valid_model_with_external_data(tmp_path):
    from edgeres.backends.onnxrt.loader import SessionLoader

    model = tmp_path / "m" / "tiny.onnx"
    model.parent.mkdir()
    _tiny_onnx(model, external=True)
    assert (model.parent / "weights.bin").stat().st_size == 64 * 4 * 4
    x = np.ones((2, 64), dtype=np.float32)
    y = SessionLoader(model)().run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ (np.arange(256, dtype=np.float32).reshape(64, 4) / 256), rtol=1e-6)


@pytest.mark.parametrize("case, message", [
    ("missing", "ONNX file not found"),
    ("truncated", "is not a readable ONNX model (DecodeError); re-export it"),
    ("not_onnx", "is not a "),
    ("no_nodes", "its graph has no nodes"),
    ("outside", "points its external data outside the model's folder (../outside.bin)"),
    ("absolute", "points its external data outside the model's folder"),
    ("data_missing", "external data file weights.bin of tensor 'W' is missing"),
])
def test_session_loader_refuses_bad_onnx_files(case, message, tmp_path):
    import onnx
    from onnx import helper

    from edgeres.backends.onnxrt.loader import SessionLoader
    from edgeres.onnx_model.files import check_onnx_file

    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "m.onnx"
    if case == "truncated":
        _tiny_onnx(path)
        path.write_bytes(path.read_bytes()[:40])
    elif case == "not_onnx":
        path.write_text("this is a text file, not a protobuf\n" * 3)
    elif case == "no_nodes":
        onnx.save_model(helper.make_model(helper.make_graph([], "empty", [], [])), str(path))
    elif case in ("outside", "absolute", "data_missing"):
        _tiny_onnx(path, external=True)
        if case == "outside":
            # the data really exists one level up: only the containment rule can refuse it
            (folder / "weights.bin").rename(tmp_path / "outside.bin")
            _point_external_data(path, "../outside.bin")
        elif case == "absolute":
            (folder / "weights.bin").rename(tmp_path / "abs.bin")
            _point_external_data(path, str(tmp_path / "abs.bin"))
        else:
            (folder / "weights.bin").unlink()
    with pytest.raises(EdgeresError, match=None) as info:
        SessionLoader(path)()
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(EdgeresError):
        check_onnx_file(path)

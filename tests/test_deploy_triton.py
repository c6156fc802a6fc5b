"""``deploy triton``: every config.pbtxt parsed by protobuf ``text_format`` into the real ``ModelConfig`` message
shipped in ``tritonclient``, checked against the engine's actual inputs and outputs; the Python post-processing
model's ``execute`` run on real engine outputs (only Triton's utility module is faked: no server runs here);
TensorRT plans checked against the Triton release; bad input as one line each."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from helpers import assert_user_error, run_cli

pytest_plugins = ["fixtures_deploy"]


def model_config(path):
    """Parse ``config.pbtxt`` strictly (unknown fields are errors) into Triton's ``ModelConfig``."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def type_name(value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(value)


def kind_name(value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.ModelInstanceGroup.Kind.Name(value)


def deploy(engine, repo, *extra) -> str:
    proc = run_cli("deploy", "triton", "--engine", engine, "--out", repo, *extra)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


ORT_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(int64)": "TYPE_INT64", "tensor(uint8)": "TYPE_UINT8"}


def assert_matches_onnx_session(cfg, model_file):
    """Names, dims (batch axis removed) and types of the config == what ONNX Runtime reports for the file."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    for declared, actual in ((cfg.input, session.get_inputs()), (cfg.output, session.get_outputs())):
        assert [t.name for t in declared] == [a.name for a in actual]
        for t, a in zip(declared, actual, strict=True):
            assert list(t.dims) == list(a.shape[1:]) and isinstance(a.shape[0], str)  # dynamic batch axis
            assert type_name(t.data_type) == ORT_TYPES[a.type]


def test_onnxruntime_classifier_repository(tmp_path, cls_fp32_engine):
    repo = tmp_path / "repo"
    deploy(cls_fp32_engine, repo, "--name", "digits", "--instances", "2", "--max-queue-delay-us", "500")
    cfg = model_config(repo / "digits" / "config.pbtxt")
    manifest = json.loads(next(cls_fp32_engine.glob("*.manifest.json")).read_text())
    assert cfg.name == "digits" and cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == manifest["input"]["max_batch"] == 32
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.count, kind_name(g.kind)) for g in cfg.instance_group] == [(2, "KIND_CPU")]
    assert_matches_onnx_session(cfg, repo / "digits" / "1" / "model.onnx")
    assert cfg.output[0].label_filename == "labels.txt"
    assert (repo / "digits" / "labels.txt").read_text().splitlines() == manifest["class_names"]
    engine_file = cls_fp32_engine / manifest["engine"]["file"]
    assert (repo / "digits" / "1" / "model.onnx").read_bytes() == engine_file.read_bytes()


def test_openvino_repository_is_ir_with_the_engine_io(tmp_path, cls_openvino_engine, digit_images):
    from edgeres.backends.openvino.loader import openvino

    repo = tmp_path / "repo"
    deploy(cls_openvino_engine, repo, "--name", "digits_ov")
    cfg = model_config(repo / "digits_ov" / "config.pbtxt")
    assert cfg.backend == "openvino" and cfg.default_model_filename == "model.xml"
    assert (repo / "digits_ov" / "1" / "model.bin").is_file()
    ov = openvino()
    core = ov.Core()
    engine = core.read_model(str(next(cls_openvino_engine.glob("*.onnx"))))
    ir = core.read_model(str(repo / "digits_ov" / "1" / "model.xml"))
    for declared, ports in ((cfg.input, engine.inputs), (cfg.output, engine.outputs)):
        assert [t.name for t in declared] == [p.get_any_name() for p in ports]
        for t, p in zip(declared, ports, strict=True):
            assert list(t.dims) == [d.get_length() for d in list(p.get_partial_shape())[1:]]
            assert p.get_partial_shape()[0].is_dynamic
    # The IR computes what the engine computes, on real digits.
    from edgeres.config import PreprocessConfig
    from edgeres.processing import preprocess

    manifest = json.loads(next(cls_openvino_engine.glob("*.manifest.json")).read_text())
    x = preprocess(digit_images, PreprocessConfig.from_dict(manifest["preprocess"]))
    want = core.compile_model(engine, "CPU")(x)[0]
    got = core.compile_model(ir, "CPU")(x)[0]
    assert np.abs(got - want).max() < 1e-4
    assert [(g.count, kind_name(g.kind)) for g in cfg.instance_group] == [(1, "KIND_CPU")]


class FakeTensor:
    def __init__(self, name: str, array: np.ndarray):
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


@pytest.fixture
def fake_pb_utils(monkeypatch):
    """Stand-in for ``triton_python_backend_utils``, which exists only inside Triton's Python backend stub."""
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = FakeTensor

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    class TritonError:
        def __init__(self, message):
            self.message = message

    module.InferenceResponse, module.TritonError = InferenceResponse, TritonError
    module.get_input_tensor_by_name = lambda request, name: request[name]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


def load_model_py(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("deployed_postprocess_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_as_triton_json(cfg) -> str:
    """The model config as Triton hands it to ``initialize`` (JSON of the protobuf message)."""
    from google.protobuf import json_format

    return json.dumps(json_format.MessageToDict(cfg, preserving_proto_field_name=True))


def test_detector_ensemble_and_python_postprocess(tmp_path, detect_fp32_engine, scene_images, fake_pb_utils):
    from edgeres.engine import open_engine
    from edgeres.processing import preprocess
    from edgeres.tasks.detect.decode import decode_centernet

    repo = tmp_path / "repo"
    deploy(detect_fp32_engine, repo, "--name", "scenes")
    engine_cfg = model_config(repo / "scenes" / "config.pbtxt")
    post_cfg = model_config(repo / "scenes_postprocess" / "config.pbtxt")
    ens_cfg = model_config(repo / "scenes_ensemble" / "config.pbtxt")
    assert_matches_onnx_session(engine_cfg, repo / "scenes" / "1" / "model.onnx")
    assert post_cfg.backend == "python" and ens_cfg.platform == "ensemble"
    assert engine_cfg.max_batch_size == post_cfg.max_batch_size == ens_cfg.max_batch_size == 16
    # The ensemble wires real tensor names and shapes: engine output == post-processing input.
    steps = ens_cfg.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["scenes", "scenes_postprocess"]
    assert dict(steps[0].input_map) == {"input": "input"} and dict(steps[0].output_map) == {"maps": "maps"}
    assert post_cfg.input[0].name == engine_cfg.output[0].name == "maps"
    assert list(post_cfg.input[0].dims) == list(engine_cfg.output[0].dims)
    assert [o.name for o in ens_cfg.output] == [o.name for o in post_cfg.output]
    assert sorted(steps[1].output_map) == sorted(o.name for o in post_cfg.output)  # a protobuf map: no order
    assert list(ens_cfg.input[0].dims) == list(engine_cfg.input[0].dims)
    assert (repo / "scenes_ensemble" / "1").is_dir()

    # execute() on the engine's real outputs == edgeres's decoder on the same maps.
    model_py = load_model_py(repo / "scenes_postprocess" / "1" / "model.py")
    model = model_py.TritonPythonModel()
    model.initialize({"model_config": config_as_triton_json(post_cfg)})
    engine = open_engine(detect_fp32_engine)
    with engine:
        maps = next(iter(engine.runner.infer(preprocess(scene_images, engine.preprocess)).values()))
    hws = np.array([img.shape[:2] for img in scene_images], np.int32)
    requests = [
        {"maps": FakeTensor("maps", maps[:5]), "image_hw": FakeTensor("image_hw", hws[:5])},
        {"maps": FakeTensor("maps", maps[5:]), "image_hw": FakeTensor("image_hw", hws[5:])},
    ]
    responses = model.execute(requests)
    assert len(responses) == 2 and all(r.error is None for r in responses)
    out = {
        t.name(): np.concatenate(
            [next(u for u in r.output_tensors if u.name() == t.name()).as_numpy() for r in responses]
        )
        for t in responses[0].output_tensors
    }
    settings = engine.manifest["detection"]
    want = decode_centernet(
        maps,
        len(engine.class_names),
        engine.preprocess.input_size,
        [tuple(h) for h in hws],
        settings["score_threshold"],
        settings["nms_iou"],
        settings["max_detections"],
    )
    k = post_cfg.output[1].dims[0]
    assert out["boxes"].shape == (len(scene_images), k, 4)
    for i, det in enumerate(want):
        n = int(out["num_detections"][i, 0])
        assert n == len(det)
        np.testing.assert_allclose(out["boxes"][i, :n], det.boxes, atol=1e-4)
        assert out["labels"][i, :n].tolist() == det.labels.tolist()
        assert not out["scores"][i, n:].any()
    assert out["num_detections"].sum() > 0
    # A malformed request fails alone with the decoder's message.
    bad = model.execute([{"maps": FakeTensor("maps", maps[:2]), "image_hw": FakeTensor("image_hw", hws[:3])}])
    assert "image_hw has 3 rows" in bad[0].error.message


def test_tensorrt_plan_release_warning(tmp_path):
    from fixtures_trt import engine_folder

    folder = engine_folder(tmp_path / "engines")  # placeholder bytes: config writing never reads a plan
    repo = tmp_path / "repo"
    stderr = deploy(folder, repo, "--triton-release", "24.05")
    lines = [line for line in stderr.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("warning: Triton 24.05 ships TensorRT 10.0")
    assert "24.08" in lines[0]  # the release to use for a TensorRT 10.3 plan
    cfg = model_config(repo / "r18-trt" / "config.pbtxt")
    assert cfg.platform == "tensorrt_plan" and kind_name(cfg.instance_group[0].kind) == "KIND_GPU"
    assert list(cfg.input[0].dims) == [3, 32, 32] and list(cfg.output[0].dims) == [10]
    assert (repo / "r18-trt" / "1" / "model.plan").read_bytes() == (folder / "r18-trt.plan").read_bytes()
    assert deploy(folder, tmp_path / "repo2", "--triton-release", "24.08") == ""  # the right release: no warning


def test_fixed_batch_engine_refuses_dynamic_batching(tmp_path, cls_fp32_engine):
    from engine_helpers import link_engine, rewrite_manifest

    folder = link_engine(cls_fp32_engine, tmp_path / "fixed")
    rewrite_manifest(folder, input={"shape": [1, 3, 32, 32], "max_batch": 1})
    assert_user_error(
        run_cli("deploy", "triton", "--engine", folder, "--out", tmp_path / "repo"),
        "fixed batch of 1",
        "--no-dynamic-batching",
    )
    assert not (tmp_path / "repo").exists()


def test_existing_repository_needs_force_and_keeps_other_models(tmp_path, cls_fp32_engine):
    repo = tmp_path / "repo"
    (repo / "other_model").mkdir(parents=True)
    (repo / "other_model" / "config.pbtxt").write_text('name: "other_model"\n')
    assert_user_error(run_cli("deploy", "triton", "--engine", cls_fp32_engine, "--out", repo), "--force")
    deploy(cls_fp32_engine, repo, "--force", "--name", "digits")
    deploy(cls_fp32_engine, repo, "--force", "--name", "digits")  # replaces its own folder
    assert (repo / "other_model" / "config.pbtxt").is_file()
    assert_user_error(
        run_cli("deploy", "triton", "--engine", cls_fp32_engine, "--out", repo, "--force", "--name", "other_model"),
        "not written by 'edgeres deploy'",
    )


def test_release_table_answers():
    from edgeres.deploy.triton_releases import plan_release_problem, releases_for

    assert releases_for("10.3.0.30") == ("24.08",)
    assert plan_release_problem("10.3.0", False, None) is None
    assert plan_release_problem("10.3.0", True, "24.09") is None  # version-compatible: later 10.x loads it
    assert "serve it with Triton 23.05-24.04" in plan_release_problem("8.6.1", False, "24.08")
    assert "not in edgeres's table" in plan_release_problem("10.40.0", False, None)
    assert "not in edgeres's table" in plan_release_problem("10.3.0", False, "99.01")

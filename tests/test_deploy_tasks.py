"""``deploy`` over the task layer: what differs between tasks comes from each task's ``DeployFacts``, never from its
name. The facts are checked against real engines (output shapes), the deployed apps' decoder/attach dispatch is
run on real outputs, and a task without facts or an option its task does not take is one line."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_user_error, run_cli

pytest_plugins = ["fixtures_deploy"]

DEPLOY_PACKAGE = Path(__file__).resolve().parents[1] / "edgeres" / "deploy"


def constants_in_deploy(names: set[str]) -> list[str]:
    """``file:line 'name'`` for each string constant in edgeres/deploy's code that equals one of ``names``."""
    found = []
    for path in sorted(DEPLOY_PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.name}:{node.lineno} {node.value!r}")
    return found


def test_deploy_code_never_names_a_task():
    """The principle of the task layer, for edgeres/deploy: no string equal to a task's name in its code (the
    task is looked up once in ``open_source`` and its facts are asked)."""
    from edgeres.tasks import task_names

    found = constants_in_deploy(set(task_names()))
    assert not found, f"task names in edgeres/deploy: {found}"


def test_deploy_never_branches_on_a_backend_name():
    """What differs between backends comes from the backend's facts and hooks (``edgeres.backends``), never from
    its name: no backend name appears as a constant in edgeres/deploy."""
    from edgeres.backends import backend_names

    found = constants_in_deploy(set(backend_names()))
    assert not found, f"backend names in edgeres/deploy: {found}"


@pytest.mark.parametrize(
    "engine_fixture", ["cls_fp32_engine", pytest.param("detect_fp32_engine", marks=pytest.mark.slow)]
)
def test_output_shape_facts_match_the_real_engine(engine_fixture, request):
    """A TensorRT plan's outputs are known only from the manifest and the task's ``output_shape``: for real
    engines of each task, that answer equals the ONNX graph's own output shape."""
    from edgeres.deploy.source import _manifest_io, engine_io, open_source

    src = open_source(request.getfixturevalue(engine_fixture))
    real_inputs, real_outputs = engine_io(src)
    inputs, outputs = _manifest_io(src)
    assert [(o.name, o.dtype) for o in outputs] == [(o.name, o.dtype) for o in real_outputs]
    for declared, real in zip(outputs, real_outputs, strict=True):
        assert declared.shape[0] == real.shape[0] == -1
        assert declared.shape[1:] == real.shape[1:], (declared, real)
    assert inputs[0].shape[1:] == real_inputs[0].shape[1:]


def test_a_task_without_deploy_facts_is_refused_naming_the_supported_ones(tmp_path, monkeypatch):
    """A task added without ``deploy`` facts (classify, stripped of its facts here) is one line naming the
    tasks deploy does handle."""
    from fixtures_trt import engine_folder

    from edgeres.deploy import source
    from edgeres.errors import EdgeresError

    real = source.get_task
    monkeypatch.setattr(
        source, "get_task", lambda name: replace(real(name), deploy=None) if name == "classify" else real(name)
    )
    folder = engine_folder(tmp_path / "engines")
    with pytest.raises(EdgeresError, match=r"deploy does not handle task 'classify' yet; supported: .*detect"):
        source.open_source(folder)
    monkeypatch.undo()
    assert source.open_source(folder).facts.label_filename  # the real classify facts


def test_classifier_threshold_is_refused_for_a_detector(tmp_path, detect_fp32_engine):
    out = tmp_path / "ds"
    assert_user_error(
        run_cli("deploy", "deepstream", "--engine", detect_fp32_engine, "--out", out, "--classifier-threshold", "0.5"),
        "--classifier-threshold is for classify models",
        "detect model",
    )
    assert not out.exists()


def test_classifier_app_decodes_and_labels_the_frame(tmp_path, cls_int8_engine, digit_images):
    """deploy.json names the decoder and what to attach; on the deployed classifier's real probabilities the app
    returns the top classes and puts the best one on the frame."""
    from test_deploy_deepstream import RecordingPyds, deploy, nvinfer_feed, nvinfer_pixels, ort_run

    from edgeres.deploy import deepstream_app

    out = tmp_path / "ds"
    settings, prop = deploy(cls_int8_engine, out, "--tensorrt-version", "10.3.0", "--classifier-threshold", "0.25")
    assert (settings["decoder"], settings["attach"]) == ("softmax", "frame_label")
    assert prop["classifier-threshold"] == 0.25
    probs = ort_run(out / prop["onnx-file"], nvinfer_feed(prop, nvinfer_pixels(digit_images, (32, 32))))
    loaded = deepstream_app.load_settings(out)
    pyds = RecordingPyds()
    for frame in probs:
        top = deepstream_app.decode(loaded, frame, (720, 1280), top_k=3)
        assert [i for i, _ in top] == np.argsort(-frame, kind="stable")[:3].tolist()
        assert top[0][1] == pytest.approx(float(frame.max()))
        deepstream_app.attach(pyds, None, None, loaded, top)
    assert len(pyds.displays) == len(digit_images) and not pyds.objects
    names = settings["class_names"]
    shown = [d.text_params[0].display_text.split()[0] for d in pyds.displays]
    assert shown == [names[int(i)] for i in probs.argmax(1)]


def test_apps_refuse_an_unknown_decoder_naming_theirs(tmp_path):
    import importlib.util

    from test_deploy_deepstream import RecordingPyds

    from edgeres.deploy import deepstream_app

    with pytest.raises(ValueError, match="no decoder 'upsample_argmax'; it knows: softmax, centernet"):
        deepstream_app.decode({"decoder": "upsample_argmax"}, np.zeros(3, np.float32), (720, 1280))
    with pytest.raises(ValueError, match="cannot attach 'mask'"):
        deepstream_app.attach(RecordingPyds(), None, None, {"attach": "mask", "class_names": []}, None)
    path = DEPLOY_PACKAGE / "triton_postprocess.py"
    spec = importlib.util.spec_from_file_location("postprocess_model_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = {"parameters": {"decoder": {"string_value": "upsample_argmax"}}}
    with pytest.raises(ValueError, match="'upsample_argmax' is not one of this model's: centernet"):
        module.TritonPythonModel().initialize({"model_config": json.dumps(config)})

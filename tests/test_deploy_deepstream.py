"""``deploy deepstream``: the nvinfer config read back by GLib's own KeyFile (as nvinfer reads it), with nvinfer's
typed getters and enum ranges; the written ONNX run in ONNX Runtime on real images with nvinfer's pre-processing
formula, against the engine; the app's decoder on real outputs; bad input as one line each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_user_error, run_cli

pytest_plugins = ["fixtures_deploy"]

SYSTEM_PYTHON = "/usr/bin/python3"

# How nvinfer's property parser (gstnvinfer_property_parser.cpp) reads each key we write: the GLib getter and,
# for enums, the accepted values.
TYPED_KEYS = {
    "gpu-id": ("integer", range(0, 64)),
    "net-scale-factor": ("double", None),
    "offsets": ("double_list", None),
    "model-color-format": ("integer", (0, 1, 2)),  # RGB, BGR, GRAY
    "onnx-file": ("string", None),
    "model-engine-file": ("string", None),
    "int8-calib-file": ("string", None),
    "labelfile-path": ("string", None),
    "infer-dims": ("integer_list", None),
    "batch-size": ("integer", range(1, 1025)),
    "network-mode": ("integer", (0, 1, 2)),  # FP32, INT8, FP16
    "network-type": ("integer", (0, 1, 2, 3, 100)),  # detector, classifier, segmentation, instance seg, other
    "network-input-order": ("integer", (0, 1)),  # NCHW, NHWC
    "process-mode": ("integer", (1, 2)),  # primary, secondary
    "gie-unique-id": ("integer", range(1, 1 << 16)),
    "maintain-aspect-ratio": ("boolean", None),
    "scaling-filter": ("integer", range(0, 7)),
    "output-blob-names": ("string_list", None),
    "output-tensor-meta": ("boolean", None),
    "classifier-threshold": ("double", None),
}

KEYFILE_READER = r"""
import json, sys
import gi
gi.require_version("GLib", "2.0")
from gi.repository import GLib
typed = json.loads(sys.argv[2])
kf = GLib.KeyFile.new()
kf.load_from_file(sys.argv[1], GLib.KeyFileFlags.NONE)
groups = list(kf.get_groups()[0])
keys = list(kf.get_keys("property")[0])
out = {}
for key in keys:
    getter = typed.get(key)
    if getter is None:
        out[key] = {"unknown": kf.get_string("property", key)}
        continue
    value = getattr(kf, "get_" + getter)("property", key)  # raises GLib.Error on a value of the wrong type
    out[key] = list(value) if isinstance(value, (list, tuple)) else value
print(json.dumps({"groups": groups, "property": out}))
"""


def system_python_with_gi() -> str:
    """The system Python with GLib's bindings (python3-gi); missing: fail on CI, skip elsewhere."""
    probe = "import gi; gi.require_version('GLib', '2.0'); from gi.repository import GLib; GLib.KeyFile.new()"
    for candidate in (SYSTEM_PYTHON, shutil.which("python3")):
        if candidate and subprocess.run([candidate, "-c", probe], capture_output=True).returncode == 0:
            return candidate
    message = "GLib's Python bindings are missing (apt-get install python3-gi)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must provide them")
    pytest.skip(message)


def read_nvinfer_config(path) -> dict:
    """The ``[property]`` group as GLib's KeyFile parses it, each key through nvinfer's typed getter."""
    python = system_python_with_gi()
    typed = {key: getter for key, (getter, _) in TYPED_KEYS.items()}
    proc = subprocess.run(
        [python, "-c", KEYFILE_READER, str(path), json.dumps(typed)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    parsed = json.loads(proc.stdout)
    assert parsed["groups"] == ["property"]
    prop = parsed["property"]
    unknown = {k: v for k, v in prop.items() if isinstance(v, dict)}
    assert not unknown, f"keys nvinfer would not read: {unknown}"
    for key, value in prop.items():
        allowed = TYPED_KEYS[key][1]
        if allowed is not None:
            assert value in allowed, f"{key}={value} is outside nvinfer's accepted values {allowed}"
    return prop


def deploy(engine, out, *extra):
    proc = run_cli("deploy", "deepstream", "--engine", engine, "--out", out, *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "deploy.json").read_text()), read_nvinfer_config(out / "config_infer_primary.txt")


def nvinfer_pixels(images, input_hw, channel_order="RGB") -> np.ndarray:
    """Frames resized as nvinfer does for maintain-aspect-ratio=0 (stretch, bilinear), in the model's order."""
    import cv2

    h, w = input_hw
    resized = np.stack([cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR) for img in images])
    return resized[..., ::-1] if channel_order == "RGB" else resized


def nvinfer_feed(prop: dict, pixels: np.ndarray) -> np.ndarray:
    """``net-scale-factor * (x - offsets)`` with the values GLib read from the config."""
    from edgeres.deploy.normalize import NvinferScaling, nvinfer_input

    return nvinfer_input(pixels, NvinferScaling(prop["net-scale-factor"], tuple(prop["offsets"]), None))


def ort_run(path, feed: np.ndarray) -> np.ndarray:
    from edgeres.backends.onnxrt.loader import SessionLoader

    session = SessionLoader(path, opt_level="basic")()
    return session.run(None, {session.get_inputs()[0].name: feed})[0]


def engine_outputs(engine_dir, images) -> np.ndarray:
    from edgeres.engine import open_engine
    from edgeres.processing import preprocess

    engine = open_engine(engine_dir)
    with engine:
        return next(iter(engine.runner.infer(preprocess(images, engine.preprocess)).values()))


class RecordingPyds:
    """Stand-in for DeepStream's ``pyds`` (it exists only on a DeepStream machine): hands out metadata objects
    that accept any attribute and records what the app adds to the frame."""

    class Meta:
        def __getattr__(self, name):
            value = RecordingPyds.Meta()
            object.__setattr__(self, name, value)
            return value

        def __getitem__(self, index):
            return getattr(self, f"item{index}")

        def set(self, *values):
            object.__setattr__(self, "values", values)

    def __init__(self):
        self.objects, self.displays = [], []

    def nvds_acquire_obj_meta_from_pool(self, batch_meta):
        return RecordingPyds.Meta()

    def nvds_acquire_display_meta_from_pool(self, batch_meta):
        return RecordingPyds.Meta()

    def nvds_add_obj_meta_to_frame(self, frame_meta, obj, parent):
        self.objects.append(obj)

    def nvds_add_display_meta_to_frame(self, frame_meta, display):
        self.displays.append(display)


def test_fp32_classifier_config_reads_back_and_matches_the_engine(tmp_path, cls_fp32_engine, digit_images):
    from edgeres.tasks.classify.outputs import softmax

    out = tmp_path / "ds"
    settings, prop = deploy(cls_fp32_engine, out, "--batch-size", "4")
    manifest = json.loads(next(cls_fp32_engine.glob("*.manifest.json")).read_text())
    mean, std = manifest["preprocess"]["mean"], manifest["preprocess"]["std"]
    assert len(set(std)) == 3  # ImageNet std: the per-channel fold is what is tested
    assert prop["net-scale-factor"] == pytest.approx(1 / 255)
    assert prop["offsets"] == pytest.approx([255 * m for m in mean])
    assert prop["infer-dims"] == [3, 32, 32] and prop["batch-size"] == 4
    assert (prop["network-mode"], prop["network-type"], prop["model-color-format"]) == (0, 1, 0)
    assert prop["output-tensor-meta"] is True and prop["maintain-aspect-ratio"] is False
    assert "int8-calib-file" not in prop
    assert prop["model-engine-file"] == "model.onnx_b4_gpu0_fp32.engine"
    assert (out / "labels.txt").read_text() == ";".join(manifest["class_names"]) + "\n"  # classifier: one line
    assert "1/std per channel is inside the ONNX" in settings["normalization"]
    from edgeres.deploy.source import onnx_io

    inputs, outputs = onnx_io(out / prop["onnx-file"])
    assert [o.name for o in outputs] == prop["output-blob-names"] == ["probabilities"]
    assert list(inputs[0].shape[1:]) == prop["infer-dims"]
    # Exactness: nvinfer's formula with the folded ONNX == the engine with edgeres's pre-processing.
    got = ort_run(out / prop["onnx-file"], nvinfer_feed(prop, nvinfer_pixels(digit_images, (32, 32))))
    want = softmax(engine_outputs(cls_fp32_engine, digit_images))
    assert np.abs(got - want).max() < 1e-4
    assert (got.argmax(1) == want.argmax(1)).all()


def test_int8_qdq_config_never_falls_back_to_fp16(tmp_path, cls_int8_engine, cls_calibration, digit_images):
    import onnx

    from edgeres.quant.trt_cache import read_cache

    out = tmp_path / "ds"
    settings, prop = deploy(cls_int8_engine, out, "--tensorrt-version", "10.3.0")
    assert prop["network-mode"] == 1 and settings["int8_from"] == "qdq"
    calib = out / prop["int8-calib-file"]  # relative to the config, as nvinfer resolves it
    assert calib.is_file() and os.access(calib, os.R_OK)
    header, table = read_cache(calib)
    assert header == "TRT-100300-EntropyCalibration2" and "input_std" in table
    model = onnx.load(str(out / prop["onnx-file"]))
    ops = [n.op_type for n in model.graph.node]
    assert ops[0] == "Mul" and ops.count("QuantizeLinear") > 10  # the 1/std Mul, then the calibrated artifact
    # Every calibrated value kept: the deployed artifact with nvinfer's formula vs the calibration's artifact.
    from edgeres.config import PreprocessConfig
    from edgeres.processing import preprocess
    from edgeres.tasks.classify.outputs import softmax

    manifest = json.loads(next(cls_int8_engine.glob("*.manifest.json")).read_text())
    pre = PreprocessConfig.from_dict(manifest["preprocess"])
    got = ort_run(out / prop["onnx-file"], nvinfer_feed(prop, nvinfer_pixels(digit_images, (32, 32))))
    want = softmax(ort_run(cls_calibration / "model.qdq.onnx", preprocess(digit_images, pre)))
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9
    assert np.abs(got - want).max() < 0.05


def test_int8_from_cache_moves_the_input_range_to_the_std_mul(tmp_path, cls_int8_engine, cls_calibration):
    import onnx

    from edgeres.quant.scales import Scales
    from edgeres.quant.trt_cache import read_cache

    out = tmp_path / "ds"
    settings, prop = deploy(cls_int8_engine, out, "--tensorrt-version", "8.6.2", "--int8-from", "cache")
    assert settings["int8_from"] == "cache" and prop["network-mode"] == 1
    model = onnx.load(str(out / prop["onnx-file"]))
    assert not any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    header, table = read_cache(out / prop["int8-calib-file"])
    scales = Scales.load(cls_calibration / "scales.json")
    assert header == "TRT-8602-EntropyCalibration2"
    assert table["input_std"] == pytest.approx(scales.activations["input"]["amax"] / 127, rel=1e-6)
    assert table["input"] * 127 == pytest.approx(max(max(m, 1 - m) for m in (0.485, 0.456, 0.406)), rel=1e-6)


def test_detector_app_decodes_real_outputs_like_edgeres(tmp_path, detect_fp32_engine, scene_images):
    from edgeres.deploy import deepstream_app
    from edgeres.tasks.detect.decode import decode_centernet

    out = tmp_path / "ds"
    settings, prop = deploy(detect_fp32_engine, out)
    assert (prop["network-type"], prop["output-tensor-meta"]) == (100, True)
    assert (out / "labels.txt").read_text().splitlines() == settings["class_names"]
    assert (out / "deepstream_app.py").read_text() == Path(deepstream_app.__file__).read_text()
    h, w = settings["input_hw"]
    maps = ort_run(out / prop["onnx-file"], nvinfer_feed(prop, nvinfer_pixels(scene_images, (h, w))))
    want_maps = engine_outputs(detect_fp32_engine, scene_images)
    assert np.abs(maps - want_maps).max() < 1e-3
    loaded = deepstream_app.load_settings(out)
    assert (loaded["decoder"], loaded["attach"]) == ("centernet", "objects")
    det = settings["detection"]
    manifest = json.loads(next(detect_fp32_engine.glob("*.manifest.json")).read_text())
    assert det == manifest["detection"]
    found = 0
    pyds = RecordingPyds()
    for i, frame in enumerate(maps):
        got = deepstream_app.decode(loaded, frame, (720, 1280))
        deepstream_app.attach(pyds, None, None, loaded, got)  # one NvDsObjectMeta per box
        want = decode_centernet(
            want_maps[i : i + 1],
            len(settings["class_names"]),
            (h, w),
            [(720, 1280)],
            det["score_threshold"],
            det["nms_iou"],
            det["max_detections"],
        )[0]
        assert got.labels.tolist() == want.labels.tolist()
        np.testing.assert_allclose(got.boxes, want.boxes, atol=0.5)  # pixels at 1280x720
        found += len(got)
    assert found > 0  # a trained detector finds digits in real scenes
    assert len(pyds.objects) == found and not pyds.displays
    assert all(obj.obj_label == loaded["class_names"][obj.class_id] for obj in pyds.objects)
    # The app itself starts without DeepStream (pyds and gi are imported only to run the pipeline).
    proc = subprocess.run(
        [sys.executable, str(out / "deepstream_app.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "nvstreammux" in proc.stdout


def test_bad_input_is_one_line(tmp_path, cls_fp32_engine, cls_int8_engine):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "mine.txt").write_text("a user's file")
    assert_user_error(run_cli("deploy", "deepstream", "--engine", cls_fp32_engine, "--out", out), "--force")
    assert_user_error(
        run_cli("deploy", "deepstream", "--engine", cls_fp32_engine, "--out", out, "--force"),
        "not written by 'edgeres deploy'",
    )
    assert (out / "mine.txt").read_text() == "a user's file"
    assert_user_error(
        run_cli("deploy", "deepstream", "--engine", cls_int8_engine, "--out", tmp_path / "x"), "--tensorrt-version"
    )
    assert_user_error(
        run_cli("deploy", "deepstream", "--engine", cls_fp32_engine, "--out", tmp_path / "y", "--batch-size", "64"),
        "max batch 32",
    )
    assert_user_error(
        run_cli(
            "deploy", "deepstream", "--engine", cls_int8_engine, "--out", tmp_path / "z", "--tensorrt-version", "11.0.0"
        ),
        "FP16",
    )
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_force_replaces_a_deploy_folder(tmp_path, cls_int8_engine):
    out = tmp_path / "ds"  # the INT8 engine: its ONNX comes from the calibration folder, no export to wait for
    deploy(cls_int8_engine, out, "--tensorrt-version", "10.3.0")
    (out / "stale.txt").write_text("old")
    deploy(cls_int8_engine, out, "--tensorrt-version", "10.3.0", "--force")
    assert not (out / "stale.txt").exists() and (out / "calib.cache").is_file()


def test_one_std_for_all_channels_stays_in_net_scale_factor():
    from edgeres.config import PreprocessConfig
    from edgeres.deploy.normalize import nvinfer_scaling

    scaling = nvinfer_scaling(PreprocessConfig(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))
    assert scaling.inv_std is None and scaling.net_scale_factor == pytest.approx(1 / (255 * 0.25))
    assert scaling.offsets == pytest.approx((127.5, 127.5, 127.5))
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    from edgeres.deploy.normalize import nvinfer_input

    np.testing.assert_allclose(nvinfer_input(x, scaling)[0, 0], (x[0, ..., 0] / 255 - 0.5) / 0.25, atol=1e-5)

"""Segmentation end to end on real digit-masks: train, eval, build FP32 and INT8 ONNX Runtime engines, predict with
--draw/--json, bench; torch and the engine give the same class map; bad input is one line and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_user_error, run_cli

pytest_plugins = ["fixtures_segment"]


def _val_images(data: Path, n: int = 16) -> list[Path]:
    return sorted((data / "val" / "images").glob("*.png"))[:n]


def _torch_class_maps(ckpt_path: Path, images: list[Path]) -> list[np.ndarray]:
    import torch

    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.models.registry import get_model
    from edgeres.processing import preprocess, read_image
    from edgeres.tasks.segment.outputs import class_maps

    ckpt = load_checkpoint(ckpt_path)
    model = get_model(ckpt.config.arch, num_classes=len(ckpt.config.class_names)).eval()
    model.load_state_dict(ckpt.state_dict)
    frames = [read_image(p) for p in images]
    with torch.no_grad():
        logits = model(torch.from_numpy(preprocess(frames, ckpt.config.preprocess))).numpy()
    return class_maps(logits, [f.shape[:2] for f in frames])


def _engine_class_maps(engine_path: Path, images: list[Path]) -> list[np.ndarray]:
    from edgeres.engine import open_engine
    from edgeres.processing import preprocess, read_image
    from edgeres.tasks.segment.outputs import class_maps

    frames = [read_image(p) for p in images]
    with open_engine(engine_path) as engine:
        out = engine.runner.infer(preprocess(frames, engine.preprocess))
    return class_maps(next(iter(out.values())), [f.shape[:2] for f in frames])


def test_torch_and_fp32_engine_agree_on_999_per_mille_of_pixels(trained_segmenter, segment_engines, masks_data):
    images = _val_images(masks_data, 8)  # the engine's maximum batch
    ref = np.concatenate([m.reshape(-1) for m in _torch_class_maps(trained_segmenter, images)])
    got = np.concatenate([m.reshape(-1) for m in _engine_class_maps(segment_engines["fp32"], images)])
    assert (ref == got).mean() >= 0.999


def test_eval_checkpoint_and_engines(trained_segmenter, segment_engines, masks_data):
    """eval --json: mIoU of torch and the FP32 engine agree; INT8 stays close; per-class IoU is reported."""
    results = {}
    for name, args in {"torch": ["--model", trained_segmenter], "fp32": ["--engine", segment_engines["fp32"]],
                       "int8": ["--engine", segment_engines["int8"]]}.items():  # fmt: skip
        proc = run_cli("eval", *args, "--data", masks_data, "--json")
        assert proc.returncode == 0, proc.stderr
        results[name] = json.loads(proc.stdout)
    assert results["torch"]["task"] == "segment" and results["torch"]["images"] == 60
    assert abs(results["fp32"]["miou"] - results["torch"]["miou"]) < 0.002
    assert results["int8"]["miou"] >= results["fp32"]["miou"] - 0.05
    assert set(results["fp32"]["per_class"]) == {"background", *"0123456789"}


def test_int8_engine_runs_every_conv_in_integer_but_the_logits_head(segment_engines):
    import onnx

    graph = onnx.load(str(segment_engines["int8"])).graph
    float_convs = [n.name for n in graph.node if n.op_type == "Conv"]
    integer_convs = [n for n in graph.node if n.op_type in ("QLinearConv", "ConvInteger")]
    assert float_convs == ["/classifier/Conv"]
    assert len(integer_convs) == 28  # ResNet-18's 20 + 4 lateral + 3 smooth + the 3x3 head


def test_openvino_int8_segmenter_keeps_the_qdq_arithmetic(tmp_path, trained_segmenter, segment_calibration,
                                                          segment_engines, masks_data):
    """The OpenVINO INT8 engine (what ``auto`` builds for a segmenter on x86 with OpenVINO installed) gives the class
    map of the Q/DQ artifact run as written (ONNX Runtime with graph optimizations off: TensorRT's arithmetic) on
    >= 99.9 % of the val pixels, on whatever x86 CPU this runs (the stem is split where products sum in 16 bits), and
    scores the mIoU of the ONNX Runtime INT8 engine."""
    import onnxruntime as ort

    from edgeres.build import BuildConfig, build_engine
    from edgeres.engine import open_engine
    from edgeres.evaluate import evaluate_open_engine
    from edgeres.processing import preprocess, read_image
    from edgeres.tasks.segment.outputs import class_maps

    out = tmp_path / "seg-ov"
    _, manifest = build_engine(BuildConfig(model=trained_segmenter, out=out, backend="openvino", precision="int8",
                                           calib=segment_calibration, max_batch=8), progress=False)
    assert manifest["backend"]["name"] == "openvino" and manifest["backend"]["integer_layers"] >= 28
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    reference = ort.InferenceSession(str(segment_calibration / "model.qdq.onnx"), options,
                                     providers=["CPUExecutionProvider"])
    images = _val_images(masks_data, 24)
    got, want = [], []
    with open_engine(out) as engine:
        for start in range(0, len(images), 8):
            frames = [read_image(p) for p in images[start:start + 8]]
            x, sizes = preprocess(frames, engine.preprocess), [f.shape[:2] for f in frames]
            got += class_maps(next(iter(engine.runner.infer(x).values())), sizes)
            want += class_maps(reference.run(None, {"input": x})[0], sizes)
    same = np.concatenate([(a == b).reshape(-1) for a, b in zip(got, want, strict=True)])
    assert same.mean() >= 0.999, f"{100 * same.mean():.3f} % of pixels as the Q/DQ reference"
    ov = evaluate_open_engine(open_engine(out), masks_data / "val")
    ort_int8 = evaluate_open_engine(open_engine(segment_engines["int8"]), masks_data / "val")
    assert ov["miou"] == pytest.approx(ort_int8["miou"], abs=0.01)


def test_predict_json_and_draw(segment_engines, masks_data, tmp_path):
    images = _val_images(masks_data, 2)
    proc = run_cli("predict", "--engine", segment_engines["int8"], *images, "--json", "--draw", tmp_path / "drawn")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["schema"] for r in records] == ["edgeres.segment/1"] * 2
    fractions = [p["fraction"] for p in records[0]["predictions"]]
    assert sum(fractions) == pytest.approx(1.0, abs=1e-4) and fractions == sorted(fractions, reverse=True)
    import cv2

    drawn = cv2.imread(records[0]["drawn"])
    assert drawn.shape == (64, 64, 3)
    # The class-id map beside it: a palette PNG whose pixels are class indices, agreeing with the JSON's fractions.
    import numpy as np
    from PIL import Image

    with Image.open(records[0]["class_map"]) as im:
        assert im.mode == "P"
        classes = np.asarray(im)
    assert classes.shape == (64, 64)
    for p in records[0]["predictions"]:
        assert (classes == p["index"]).mean() == pytest.approx(p["fraction"], abs=1e-3)
    again = run_cli("predict", "--engine", segment_engines["int8"], *images, "--draw", tmp_path / "drawn")
    assert again.returncode != 0 and "--force" in again.stderr  # nothing of an earlier run is overwritten
    mask_view = run_cli("predict", "--engine", segment_engines["int8"], images[0], "--json", "--view", "mask",
                        "--draw", tmp_path / "drawn", "--force")
    assert mask_view.returncode == 0, mask_view.stderr
    only_colours = cv2.imread(json.loads(mask_view.stdout)["drawn"])
    black = (only_colours == 0).all(axis=-1)  # the mask view: class colours alone, background black (legend aside)
    assert black[classes == 0].mean() > 0.8 and not black[classes != 0].any()
    bad = run_cli("predict", "--engine", segment_engines["int8"], images[0], "--view", "sideways")
    assert bad.returncode != 0 and "--view" in bad.stderr and "Traceback" not in bad.stderr


def test_bench_times_decoding_as_post_processing(segment_engines):
    proc = run_cli("bench", "--engine", segment_engines["fp32"], "--duration", "1", "--warmup", "0.2", "--json")
    assert proc.returncode == 0, proc.stderr
    latency = json.loads(proc.stdout)["engines"][0]["results"][0]["latency_ms"]
    assert latency["postprocess"]["p50"] > 0 and latency["end_to_end"]["p50"] >= latency["inference"]["p50"]


@pytest.mark.slow  # exports and builds FCN-ResNet50 (130 MB of weights)
def test_torchvision_fcn_random_weights_export_build_run(tmp_path):
    """torchvision's FCN-ResNet50 (random weights, 64x64) checkpoint -> FP32 ONNX Runtime engine -> same class map."""
    import torch

    from edgeres.build import BuildConfig, build_engine
    from edgeres.config import ModelConfig, PreprocessConfig
    from edgeres.data.compose import load_backgrounds
    from edgeres.models.checkpoint import save_checkpoint
    from edgeres.models.registry import get_model

    torch.manual_seed(0)
    model = get_model("fcn_resnet50", num_classes=3)
    ckpt = tmp_path / "fcn.safetensors"
    save_checkpoint(
        ckpt,
        model,
        ModelConfig("fcn_resnet50", ["background", "a", "b"], task="segment", preprocess=PreprocessConfig((64, 64))),
    )
    engine = build_engine(
        BuildConfig(model=ckpt, out=tmp_path / "fcn-fp32", backend="onnxruntime", max_batch=1), progress=False
    )[0]
    import cv2

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.ascontiguousarray(load_backgrounds(["coffee"])[0][:90, :120, ::-1]))
    ref, got = _torch_class_maps(ckpt, [photo])[0], _engine_class_maps(engine, [photo])[0]
    assert ref.shape == (90, 120) and (ref == got).mean() >= 0.999


def test_data_problems_stop_training_before_anything_is_written(masks_data, tmp_path):
    import shutil

    from PIL import Image

    data = tmp_path / "bad"
    shutil.copytree(masks_data, data)
    (data / "train" / "masks" / "00001.png").unlink()
    Image.fromarray(np.full((64, 64), 40, np.uint8), mode="L").save(data / "train" / "masks" / "00002.png")
    proc = run_cli("train", "--task", "segment", "--data", data, "--out", tmp_path / "run", "--epochs", "1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()  # one report: a count line, then one line per problem
    assert lines[0].startswith("error: 2 problems in") and lines[0].endswith("(images/ + masks/):"), proc.stderr
    assert (
        "images/00001.png: image has no mask" in lines[1] and "images/00002.png: mask value 40 is no class" in lines[2]
    )
    assert not (tmp_path / "run").exists()


def test_segmenter_given_where_a_classifier_is_required_and_back(
    trained_segmenter, trained_checkpoint, masks_data, digits_data, tmp_path
):
    proc = run_cli(
        "train", "--data", digits_data, "--out", tmp_path / "a", "--init-from", trained_segmenter, "--epochs", "1"
    )
    assert_user_error(proc, "is a segment model, but a classify model is required")
    proc = run_cli(
        "train",
        "--task",
        "segment",
        "--arch",
        "resnet34",
        "--data",
        masks_data,
        "--out",
        tmp_path / "b",
        "--init-from",
        trained_checkpoint,
        "--epochs",
        "1",
    )
    assert_user_error(proc, "is a resnet18 classify model; seg_resnet34 needs a resnet34 backbone")
    proc = run_cli("train", "--task", "segment", "--data", masks_data, "--out", tmp_path / "c", "--img-size", "48")
    assert_user_error(proc, "--img-size 48 must be a multiple of 32")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_camera_loop_overlays_a_segmentation_video_and_records_it(tmp_path, segment_engines, masks_data):
    """A real video of 20 val scenes (192x192, MPEG-4 in Matroska) through the camera loop with the INT8 engine:
    one JSON record per frame with per-class fractions, and every frame in the recording (checked with ffprobe)."""
    import cv2
    from fixtures_camera import ffprobe_frames

    from edgeres.processing import read_image

    video = tmp_path / "masks.mkv"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FMP4"), 10.0, (192, 192))
    for path in _val_images(masks_data, 20):
        writer.write(cv2.resize(read_image(path), (192, 192), interpolation=cv2.INTER_NEAREST))
    writer.release()
    record = tmp_path / "overlay.mkv"
    proc = run_cli(
        "camera",
        "--engine",
        segment_engines["int8"],
        "--source",
        video,
        "--headless",
        "--json",
        "--record",
        record,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 20 and all(r["task"] == "segment" for r in rows)
    for r in rows:
        assert sum(p["fraction"] for p in r["predictions"]) == pytest.approx(1.0, abs=1e-4)
    assert sum(any(p["label"] != "background" for p in r["predictions"]) for r in rows) >= 18  # digits found
    assert ffprobe_frames(record)[1] == 20


def test_report_has_miou_columns_per_class_iou_change_and_gates_on_miou(segment_engines, masks_data, tmp_path):
    engines = [a for e in ("fp32", "int8") for a in ("--engines", segment_engines[e])]
    proc = run_cli(
        "report", *engines, "--data", masks_data, "--out", tmp_path / "r", "--duration", "0.3", "--warmup", "0.1"
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    rows = report["rows"] if isinstance(report, dict) and "rows" in report else report
    int8 = next(r for r in rows if r["precision"] == "int8")
    assert {"miou", "pixel_acc", "mean_class_acc"} <= set(int8) and set(int8["per_class_delta"]) >= {"background"}
    assert "mIoU" in (tmp_path / "r" / "report.md").read_text()
    # a baseline whose mIoU is 5 points higher: the INT8 engine has regressed, exit code 2
    baseline = json.loads((tmp_path / "r" / "report.json").read_text())
    for row in baseline["rows"] if isinstance(baseline, dict) and "rows" in baseline else baseline:
        row["miou"] = row["miou"] + 0.05
    (tmp_path / "baseline.json").write_text(json.dumps(baseline))
    proc = run_cli(
        "report",
        *engines,
        "--data",
        masks_data,
        "--out",
        tmp_path / "r2",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--baseline",
        tmp_path / "baseline.json",
        "--max-drop",
        "1",
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "mIoU" in proc.stdout + proc.stderr

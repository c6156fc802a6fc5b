"""A detector through the whole product: train, export, ONNX Runtime FP32/INT8 engines, eval, predict, bench.

Everything runs on real digit-scenes images with a really trained CenterNet ResNet-18 (fixtures_detect).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import assert_user_error, run_cli

pytest_plugins = ["fixtures_detect"]

BOX_TOLERANCE_PX = 0.5  # ONNX Runtime vs torch FP32: same boxes within half a pixel, same labels
SCORE_TOLERANCE = 1e-3


def _val_images(scenes_data, n: int = 16):
    from edgeres.processing import read_image

    return [read_image(p) for p in sorted((scenes_data / "val" / "images").glob("*.png"))[:n]]


def test_onnxruntime_engine_and_torch_return_the_same_boxes(trained_detector, detect_fp32_engine, scenes_data):
    import torch

    from edgeres.engine import open_engine
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.processing import preprocess
    from edgeres.tasks.detect.decode import decode_centernet

    images = _val_images(scenes_data)
    ckpt = load_checkpoint(trained_detector)
    x = preprocess(images, ckpt.config.preprocess)
    with torch.inference_mode():
        want_maps = ckpt.build_model()(torch.from_numpy(x)).numpy()
    with open_engine(detect_fp32_engine) as engine:
        got_maps = engine.runner.infer(x)["maps"]
    hws = [img.shape[:2] for img in images]
    want = decode_centernet(want_maps, 10, ckpt.config.preprocess.input_size, hws)
    got = decode_centernet(got_maps, 10, ckpt.config.preprocess.input_size, hws)
    assert sum(len(d) for d in want) >= len(images)  # real digits found in (nearly) every scene
    for w, g in zip(want, got, strict=True):
        assert len(w) == len(g)
        np.testing.assert_array_equal(w.labels, g.labels)
        np.testing.assert_allclose(g.boxes, w.boxes, atol=BOX_TOLERANCE_PX)
        np.testing.assert_allclose(g.scores, w.scores, atol=SCORE_TOLERANCE)


def test_engine_manifest_records_the_detection_defaults(detect_fp32_engine):
    manifest = json.loads(next(detect_fp32_engine.glob("*.manifest.json")).read_text())
    assert manifest["task"] == "detect" and manifest["outputs"] == ["maps"]
    assert manifest["detection"] == {"decoder": "centernet", "stride": 4, "score_threshold": 0.3, "nms_iou": 0.5,
                                     "max_detections": 100}
    assert manifest["class_names"] == [str(i) for i in range(10)]


def test_int8_engine_keeps_map_and_runs_integer_convs(trained_detector, detect_fp32_engine, detect_int8_engine,
                                                     scenes_data):
    import onnx

    from edgeres.engine import open_engine
    from edgeres.evaluate import evaluate_open_engine
    from edgeres.quant.cpu import FLOAT_COMPUTE_OPS

    fp32 = evaluate_open_engine(open_engine(detect_fp32_engine), scenes_data / "val")
    int8 = evaluate_open_engine(open_engine(detect_int8_engine), scenes_data / "val")
    assert int8["map50"] >= fp32["map50"] - 0.03, (fp32["map50"], int8["map50"])
    manifest = json.loads(next(detect_int8_engine.glob("*.manifest.json")).read_text())
    # Only the three 1x1 head convs that write the float output stay float on the CPU (no integer Conv with a
    # float output exists in ONNX Runtime); every other Conv is an integer kernel.
    assert manifest["cpu_float_output_layers"] == ["/heatmap/heatmap.2/Conv", "/offset/offset.2/Conv",
                                                   "/size/size.2/Conv"]
    graph = onnx.load(str(next(detect_int8_engine.glob("*.onnx")))).graph
    float_convs = sorted(n.name for n in graph.node if n.op_type in FLOAT_COMPUTE_OPS)
    assert float_convs == manifest["cpu_float_output_layers"]
    assert sum(n.op_type in ("QLinearConv", "ConvInteger") for n in graph.node) >= 30


def test_detector_qdq_artifact_follows_tensorrt_rules(detect_calibration):
    import onnx

    from edgeres.quant.checker import check_qdq_model

    qdq = onnx.load(str(detect_calibration / "model.qdq.onnx"))
    assert check_qdq_model(qdq) == []
    # The upsampling inputs carry the scale of the Add input after them (nearest resize copies values).
    resizes = [n for n in qdq.graph.node if n.op_type == "Resize"]
    made_by = {o: n for n in qdq.graph.node for o in n.output}
    assert len(resizes) == 3 and all(made_by[r.input[0]].op_type == "DequantizeLinear" for r in resizes)


def test_eval_cli_reports_map_of_model_and_engine(trained_detector, detect_fp32_engine, scenes_data):
    from edgeres.engine import open_engine
    from edgeres.evaluate import evaluate_open_engine

    proc = run_cli("eval", "--engine", detect_fp32_engine, "--data", scenes_data, "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    want = evaluate_open_engine(open_engine(detect_fp32_engine), scenes_data / "val")
    assert got["map50"] == pytest.approx(want["map50"], abs=1e-9) and got["images"] == 80
    proc = run_cli("eval", "--model", trained_detector, "--data", scenes_data / "val")
    assert proc.returncode == 0, proc.stderr
    assert "mAP@0.5" in proc.stdout and "per class" in proc.stdout


def test_predict_writes_boxes_and_drawn_images(tmp_path, detect_fp32_engine, scenes_data):
    images = sorted((scenes_data / "val" / "images").glob("*.png"))[:3]
    drawn = tmp_path / "drawn"
    proc = run_cli("predict", *images, "--engine", detect_fp32_engine, "--json", "--draw", drawn)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["image"] for r in rows] == [str(p) for p in images]
    assert all(r["task"] == "detect" and r["schema"] == "edgeres.detect/1" for r in rows)
    assert any(r["predictions"] for r in rows)
    for r in rows:
        for d in r["predictions"]:
            assert d["score"] >= 0.3 and d["label"] in [str(i) for i in range(10)]
            x0, y0, x1, y1 = d["box"]
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    import cv2

    for src, r in zip(images, rows, strict=True):
        out = cv2.imread(str(drawn / src.name))
        assert out is not None and out.shape == (64, 64, 3)
        assert (out != cv2.imread(str(src))).any() == bool(r["predictions"])
    again = run_cli("predict", images[0], "--engine", detect_fp32_engine, "--draw", drawn)
    assert_user_error(again, "already exists", "--force")
    strict = run_cli("predict", *images, "--engine", detect_fp32_engine, "--json", "--score-threshold", "1.0")
    assert strict.returncode == 0 and all(not json.loads(line)["predictions"] for line in strict.stdout.splitlines())


def test_predict_refuses_bad_detection_settings(detect_fp32_engine, scenes_data):
    image = next((scenes_data / "val" / "images").glob("*.png"))
    proc = run_cli("predict", image, "--engine", detect_fp32_engine, "--nms-iou", "0")
    assert_user_error(proc, "--nms-iou", "(0, 1]")


def test_bench_times_the_detection_decoder(detect_fp32_engine, trained_detector):
    proc = run_cli("bench", "--engine", detect_fp32_engine, "--model", trained_detector, "--duration", "0.5",
                   "--warmup", "0.1", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["engines"]
    assert [r["backend"] for r in rows] == ["onnxruntime", "torch"]
    for row in rows:
        post = row["results"][0]["latency_ms"]["postprocess"]
        assert post["p50"] > 0


def test_train_detect_refuses_broken_data_before_training(tmp_path, scenes_data):
    data = shutil.copytree(scenes_data, tmp_path / "broken")
    doc = json.loads((data / "train" / "annotations.json").read_text())
    missing = doc["images"][3]["file_name"]
    (data / "train" / missing).unlink()
    doc["annotations"][0]["category_id"] = 99
    (data / "train" / "annotations.json").write_text(json.dumps(doc))
    proc = run_cli("train", "--task", "detect", "--data", data, "--out", tmp_path / "run", "--img-size", "64",
                   "--epochs", "1")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert missing.split("/")[-1] in proc.stderr and "99" in proc.stderr
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_train_detect_refuses_a_classifier_arch_and_odd_sizes(tmp_path, scenes_data):
    proc = run_cli("train", "--task", "detect", "--data", scenes_data, "--out", tmp_path / "r", "--arch", "resnet101",
                   "--epochs", "1")
    assert_user_error(proc, "centernet_resnet101", "available")
    proc = run_cli("train", "--task", "detect", "--data", scenes_data, "--out", tmp_path / "r", "--img-size", "72",
                   "--epochs", "1")
    assert_user_error(proc, "--img-size 72", "multiple of 32")


def test_qat_fine_tunes_a_detector_into_an_int8_engine(tmp_path, trained_detector, detect_calibration,
                                                       scenes_data):
    """QAT with the detection loss from the calibration, then build --qat: the INT8 engine finds the digits."""
    from edgeres.engine import open_engine
    from edgeres.evaluate import evaluate_open_engine
    from edgeres.models.checkpoint import load_checkpoint

    run = tmp_path / "qat"
    proc = run_cli("qat", "--model", trained_detector, "--data", scenes_data, "--calib", detect_calibration,
                   "--epochs", "1", "--max-steps", "6", "--batch-size", "16", "--lr", "1e-4", "--out", run, "--quiet",
                   timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = load_checkpoint(run / "best.safetensors").summary
    assert summary["qat"] and summary["start_val_map50_int8"] > 0.2
    assert summary["best_val_map50_int8"] >= summary["start_val_map50_int8"]
    engine = tmp_path / "det-qat"
    proc = run_cli("build", "--qat", run / "best.safetensors", "--precision", "int8", "--out", engine, timeout=600)
    assert proc.returncode == 0, proc.stderr
    metrics = evaluate_open_engine(open_engine(engine), scenes_data / "val")
    # The engine computes what the fake-quantized model computed in training.
    assert metrics["map50"] == pytest.approx(summary["best_val_map50_int8"], abs=0.02)


def test_camera_loop_runs_a_detector_on_a_video_and_records_boxes(tmp_path, detect_fp32_engine, scenes_data):
    """A real video of 24 real scenes (256x256, MPEG-4 in Matroska) through the camera loop with a detect engine."""
    import cv2
    from fixtures_camera import ffprobe_frames

    images = _val_images(scenes_data, 24)
    video = tmp_path / "scenes.mkv"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FMP4"), 10.0, (256, 256))
    for img in images:
        writer.write(cv2.resize(img, (256, 256), interpolation=cv2.INTER_NEAREST))
    writer.release()
    record = tmp_path / "boxes.mkv"
    proc = run_cli("camera", "--engine", detect_fp32_engine, "--source", video, "--headless", "--json",
                   "--record", record, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 24 and all(r["task"] == "detect" for r in rows)
    with_boxes = [r for r in rows if r["predictions"]]
    assert len(with_boxes) >= 18  # real digits in every scene; a few misses allowed for a 30-second model
    for r in with_boxes:
        for p in r["predictions"]:
            x0, y0, x1, y1 = p["box"]
            assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256 and p["score"] >= 0.3
    assert ffprobe_frames(record)[1] == 24  # every processed frame is in the recording


def test_backbone_starts_from_a_classification_checkpoint(tmp_path, scenes_data):
    """Transfer learning: --init-from a classifier loads its backbone exactly; the classifier head is dropped."""
    import torch

    from edgeres.config import ModelConfig, PreprocessConfig
    from edgeres.models.checkpoint import save_checkpoint
    from edgeres.models.registry import get_model
    from edgeres.train import TrainConfig, build_model

    torch.manual_seed(1)
    classifier = get_model("resnet18", num_classes=10)
    ckpt = tmp_path / "cls.safetensors"
    save_checkpoint(ckpt, classifier, ModelConfig("resnet18", [str(i) for i in range(10)],
                                                  preprocess=PreprocessConfig(input_size=(32, 32))))
    cfg = TrainConfig(data=scenes_data, out=tmp_path / "run", arch="centernet_resnet18", task="detect",
                      init_from=ckpt)
    detector = build_model(cfg, [str(i) for i in range(10)])
    own = detector.state_dict()
    for key, value in classifier.state_dict().items():
        if key.startswith("fc."):
            assert f"backbone.{key}" not in own
        else:
            assert torch.equal(own[f"backbone.{key}"], value), key
    wrong = tmp_path / "r34.safetensors"
    save_checkpoint(wrong, get_model("resnet34", num_classes=10),
                    ModelConfig("resnet34", [str(i) for i in range(10)]))
    proc = run_cli("train", "--task", "detect", "--data", scenes_data, "--out", tmp_path / "r", "--init-from", wrong,
                   "--img-size", "64", "--epochs", "1")
    assert_user_error(proc, "resnet34 classifier", "resnet18 backbone")


def test_openvino_int8_detector_matches_the_onnxruntime_int8_one(tmp_path, trained_detector, detect_calibration,
                                                                 detect_int8_engine, scenes_data):
    from edgeres.build import BuildConfig, build_engine
    from edgeres.engine import open_engine
    from edgeres.evaluate import evaluate_open_engine

    out = tmp_path / "det-ov"
    build_engine(BuildConfig(model=trained_detector, out=out, backend="openvino", precision="int8",
                             calib=detect_calibration, max_batch=16), progress=False)
    ov = evaluate_open_engine(open_engine(out), scenes_data / "val")
    ort = evaluate_open_engine(open_engine(detect_int8_engine), scenes_data / "val")
    assert ov["map50"] == pytest.approx(ort["map50"], abs=0.02) and ov["map50"] > 0.3


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_backbone_detector_training_keeps_backbone_weights_and_batchnorm_statistics(
        tmp_path, scenes_data, trained_detector, freeze):
    """--freeze-backbone on a detector: the generic loop keeps the backbone's weights *and* its BatchNorm running
    statistics (the old detector loop updated the statistics); the heads learn either way."""
    import torch

    from edgeres.progress import progress_bar
    from edgeres.tasks import get_task
    from edgeres.train import TrainConfig, build_model
    from edgeres.train.distributed import make_train_loader, setup_distributed
    from edgeres.train.loop import train_one_epoch
    from edgeres.train.optim import make_optimizer, make_scheduler

    task = get_task("detect")
    cfg = TrainConfig(data=scenes_data, out=tmp_path, arch="centernet_resnet18", task="detect", img_size=64,
                      batch_size=4, init_from=trained_detector, freeze_backbone=freeze, lr=1e-2)
    data = task.load_training_data(cfg, cfg.preprocess(), with_val=False)
    model = build_model(cfg, data.class_names)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = make_train_loader(data.train, cfg.batch_size, setup_distributed(), seed=0)
    optimizer = make_optimizer(model, cfg)
    with progress_bar(enabled=False) as bar:
        train_one_epoch(model, loader, task.make_loss(0.0), optimizer, make_scheduler(optimizer, cfg, 3), "cpu", bar,
                        0, max_steps=3)
    after = model.state_dict()
    backbone = [k for k in before if k.startswith("backbone.")]
    stats = [k for k in backbone if k.endswith(("running_mean", "running_var"))]
    assert stats and len(backbone) > len(stats)
    heads = [k for k in before if not k.startswith("backbone.") and after[k].is_floating_point()]
    assert any(not torch.equal(after[k], before[k]) for k in heads)  # the heads learned
    assert all(torch.equal(after[k], before[k]) for k in backbone) == freeze
    assert all(torch.equal(after[k], before[k]) for k in stats) == freeze  # BatchNorm statistics too

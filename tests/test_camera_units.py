"""Camera-loop parts with small real inputs: source parsing, pipeline strings, open plans, the one-slot
hand-off, post-processing by task, overlays and sinks."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from edgeres.camera.loop import LoopConfig
from edgeres.camera.overlays import Hud, OverlayConfig, render
from edgeres.camera.pipelines import Facts, csi_pipeline, jetson_decode_pipeline, open_plan
from edgeres.camera.readers import ImageFolderReader, VideoReader
from edgeres.camera.results import make_postprocess
from edgeres.camera.sinks import VideoRecorder, Window, gui_available
from edgeres.camera.slots import FrameSlot, SlotClosed
from edgeres.camera.sources import SourceConfig, SourceOpenError, parse_source
from edgeres.errors import EdgeresError


def test_parse_source_kinds(tmp_path):
    video = tmp_path / "clip.mkv"
    video.write_bytes(b"x")
    cases = {
        "0": ("camera", "0"),
        "/dev/video2": ("camera", "/dev/video2"),
        "rtsp://127.0.0.1:8554/cam": ("stream", "rtsp://127.0.0.1:8554/cam"),
        "HTTP://127.0.0.1:8080/v.mjpg": ("stream", "HTTP://127.0.0.1:8080/v.mjpg"),
        "tcp://127.0.0.1:5000": ("stream", "tcp://127.0.0.1:5000"),
        "udp://@:5000": ("stream", "udp://@:5000"),
        "csi://1": ("csi", "1"),
        str(video): ("file", str(video)),
        f"file://{video}": ("file", str(video)),
        str(tmp_path): ("images", str(tmp_path)),
        "videotestsrc ! videoconvert ! appsink": ("gstreamer", "videotestsrc ! videoconvert ! appsink"),
    }
    for text, (kind, target) in cases.items():
        spec = parse_source(text)
        assert (spec.kind, spec.target) == (kind, target), text
    assert parse_source("0").live and parse_source("tcp://127.0.0.1:1").reconnects
    assert not parse_source(str(video)).live and not parse_source(str(tmp_path)).reconnects


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ftp://127.0.0.1/x", "unknown source scheme 'ftp://'"),
        ("csi://left", "csi:// takes a sensor index"),
        ("videotestsrc ! videoconvert", "must end in an appsink"),
        ("/no/such/clip.mkv", "source not found"),
        ("rtsp://", "has no host"),
        ("  ", "empty --source"),
    ],
)
def test_parse_source_errors_say_what_is_accepted(text, fragment):
    with pytest.raises(EdgeresError) as info:
        parse_source(text)
    assert fragment in str(info.value)
    if "scheme" in fragment or "not found" in fragment:
        assert "rtsp://" in str(info.value) and "csi://N" in str(info.value)


def test_csi_pipeline_is_argus_into_a_dropping_one_buffer_appsink():
    pipe = csi_pipeline(1, (1920, 1080), 60, flip=2)
    assert pipe.startswith(
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), width=(int)1920, "
        "height=(int)1080, framerate=(fraction)60/1, format=(string)NV12 ! nvvidconv flip-method=2"
    )
    assert pipe.endswith("video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false")


def test_jetson_decode_pipelines(tmp_path):
    clip = tmp_path / 'my "clip".mp4'
    clip.write_bytes(b"x")
    file_pipe = jetson_decode_pipeline(parse_source(str(clip)))
    assert file_pipe.startswith(
        f'filesrc location="{str(clip.resolve()).replace(chr(34), chr(92) + chr(34))}" ! '
        "parsebin ! nvv4l2decoder ! nvvidconv ! video/x-raw, format=(string)BGRx"
    )
    assert file_pipe.endswith("appsink drop=false max-buffers=1 sync=false")  # a file: every frame
    rtsp = jetson_decode_pipeline(parse_source("rtsp://127.0.0.1:8554/cam"), open_timeout=4)
    assert rtsp.startswith(
        'rtspsrc location="rtsp://127.0.0.1:8554/cam" latency=100 protocols=tcp '
        "tcp-timeout=4000000 timeout=4000000 ! parsebin ! nvv4l2decoder"
    )
    assert rtsp.endswith("appsink drop=true max-buffers=1 sync=false")  # live: newest buffer wins
    with pytest.raises(EdgeresError, match="files and rtsp:// streams"):
        jetson_decode_pipeline(parse_source("tcp://127.0.0.1:5000"))


def test_open_plans(tmp_path):
    clip = tmp_path / "clip.mkv"
    clip.write_bytes(b"x")
    jetson, desktop = Facts(gstreamer=True, jetson=True), Facts(gstreamer=False, jetson=False)
    labels = lambda plan: [a.backend for a in plan]  # noqa: E731
    assert labels(open_plan(parse_source(str(clip)), SourceConfig(str(clip)), jetson)) == ["GSTREAMER", "FFMPEG"]
    assert labels(open_plan(parse_source(str(clip)), SourceConfig(str(clip)), desktop)) == ["FFMPEG"]
    assert labels(open_plan(parse_source(str(clip)), SourceConfig(str(clip), decoder="cpu"), jetson)) == ["FFMPEG"]
    assert labels(open_plan(parse_source(str(clip)), SourceConfig(str(clip), decoder="jetson"), desktop)) == [
        "GSTREAMER"
    ]
    assert labels(open_plan(parse_source("rtsp://127.0.0.1/x"), SourceConfig("x"), jetson)) == ["GSTREAMER", "FFMPEG"]
    assert labels(open_plan(parse_source("http://127.0.0.1/x"), SourceConfig("x"), jetson)) == ["FFMPEG"]
    cam = open_plan(parse_source("3"), SourceConfig("3"), desktop)
    assert [(a.backend, a.target) for a in cam] == [("V4L2", "/dev/video3"), ("ANY", 3)]
    with pytest.raises(EdgeresError, match="--decoder jetson decodes files and rtsp"):
        open_plan(parse_source("udp://@:5000"), SourceConfig("x", decoder="jetson"), jetson)
    with pytest.raises(EdgeresError, match="accepted: auto, cpu, jetson"):
        open_plan(parse_source(str(clip)), SourceConfig("x", decoder="gpu"), jetson)


def test_csi_without_gstreamer_lists_the_pipeline_it_tried():
    reader = VideoReader(parse_source("csi://0"), SourceConfig("csi://0"), Facts(gstreamer=False, jetson=False))
    with pytest.raises(SourceOpenError) as info:
        reader.open()
    message = str(info.value)
    assert message.startswith("cannot open CSI camera 'csi://0': tried GStreamer Argus pipeline 'nvarguscamerasrc ")
    assert "this OpenCV has no GStreamer support" in message and "\n" not in message


def test_a_folder_without_images_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    reader = ImageFolderReader(parse_source(str(tmp_path)), SourceConfig(str(tmp_path)))
    with pytest.raises(SourceOpenError, match="holds no images"):
        reader.open()


def test_newest_wins_slot_drops_and_counts_old_frames():
    slot = FrameSlot(newest_wins=True)
    for i in range(5):
        assert slot.put(i)
    assert slot.get(0.01) == 4 and slot.dropped == 4
    assert slot.get(0.01) is None  # empty: times out instead of blocking
    slot.put(5)
    slot.close()
    assert not slot.put(6)
    assert slot.get(0.01) == 5  # what was left is still delivered
    with pytest.raises(SlotClosed):
        slot.get(0.01)


def test_blocking_slot_loses_nothing():
    slot, got = FrameSlot(newest_wins=False), []

    def consume():
        with_pause = True
        while True:
            try:
                item = slot.get(0.5)
            except SlotClosed:
                return
            if item is not None:
                got.append(item)
                if with_pause:
                    time.sleep(0.05)  # a slow consumer: the producer must wait, not drop
                    with_pause = False

    t = threading.Thread(target=consume)
    t.start()
    for i in range(50):
        assert slot.put(i)
    slot.close()
    t.join(10)
    assert got == list(range(50)) and slot.dropped == 0


def _engine_facts(task: str, names: list[str], detection: dict | None = None):
    """What make_postprocess reads from an opened engine: its task, classes, manifest and input size."""
    from types import SimpleNamespace

    from edgeres.config import PreprocessConfig

    manifest = {"task": task, **({"detection": detection} if detection else {})}
    return SimpleNamespace(
        task=task, class_names=names, manifest=manifest, preprocess=PreprocessConfig(input_size=(64, 64))
    )


def test_postprocess_by_task():
    outputs = make_postprocess(_engine_facts("classify", ["cat", "dog", "owl"]), LoopConfig(top_k=2))
    top = outputs.to_json(outputs.decode(np.array([[0.1, 3.0, 1.0]], dtype=np.float32), (480, 640)))
    assert [p["label"] for p in top] == ["dog", "owl"] and top[0]["index"] == 1
    assert top[0]["score"] == pytest.approx(np.exp(3.0) / np.exp([0.1, 3.0, 1.0]).sum(), rel=1e-5)
    assert outputs.task.json_schema == "edgeres.classify/1"
    with pytest.raises(EdgeresError, match="no 'detection' block"):
        make_postprocess(_engine_facts("detect", ["a"]), LoopConfig())
    with pytest.raises(EdgeresError, match="unknown task 'pose'; known tasks: classify, detect"):
        make_postprocess(_engine_facts("pose", ["a"]), LoopConfig())


def test_options_a_task_does_not_take_are_refused():
    detection = {"decoder": "centernet", "stride": 4, "score_threshold": 0.3, "nms_iou": 0.5, "max_detections": 100}
    with pytest.raises(EdgeresError, match="--top-k is for classify models; this one is a detect model"):
        make_postprocess(_engine_facts("detect", ["a"], detection), LoopConfig(top_k=3))
    with pytest.raises(EdgeresError, match="--score-threshold is for detect models; this one is a classify model"):
        make_postprocess(_engine_facts("classify", ["a", "b"]), LoopConfig(score_threshold=0.5))
    with pytest.raises(EdgeresError, match="--nms-iou is for detect models"):
        make_postprocess(_engine_facts("classify", ["a", "b"]), LoopConfig(nms_iou=0.5))


def _one_detection_maps() -> np.ndarray:
    # One object of class 1: peak at cell (row 4, col 6) of a 16x16 map (stride 4 on a 64x64 input), offset
    # (0.5, 0.25) cells, size 4x2 cells -> centre (26, 17), box 16x8 px at input size.
    maps = np.full((1, 2 + 4, 16, 16), -10.0, dtype=np.float32)
    maps[0, 1, 4, 6] = 4.0
    maps[0, 2:4, 4, 6] = (4.0, 2.0)
    maps[0, 4:6, 4, 6] = (0.5, 0.25)
    return maps


_DETECTION = {"decoder": "centernet", "stride": 4, "score_threshold": 0.3, "nms_iou": 0.5, "max_detections": 100}


def test_detect_postprocess_maps_boxes_to_the_frame():
    maps = _one_detection_maps()  # the frame is 128x256: x scaled by 4, y by 2
    outputs = make_postprocess(_engine_facts("detect", ["a", "b"], _DETECTION), LoopConfig())
    found = outputs.to_json(outputs.decode(maps, (128, 256)))
    assert [d["label"] for d in found] == ["b"]
    assert found[0]["box"] == pytest.approx([(26 - 8) * 4, (17 - 4) * 2, (26 + 8) * 4, (17 + 4) * 2], abs=0.01)
    assert found[0]["score"] == pytest.approx(1 / (1 + np.exp(-4.0)), abs=1e-4)
    strict = make_postprocess(_engine_facts("detect", ["a", "b"], _DETECTION), LoopConfig(score_threshold=0.99))
    assert strict.to_json(strict.decode(maps, (128, 256))) == []


def _photo() -> np.ndarray:
    from edgeres.data.samples import camera_frames

    return camera_frames(1)[0]


def test_overlays_draw_where_they_say():
    frame = _photo()
    outputs = make_postprocess(_engine_facts("classify", [str(d) for d in range(10)]), LoopConfig())
    logits = np.zeros((1, 10), np.float32)
    logits[0, 7] = 5.0
    prediction = outputs.decode(logits, frame.shape[:2])
    hud = Hud()
    for i in range(10):
        hud.update({"inference": 20.0, "capture_to_result": 30.0}, i / 25.0)
    assert hud.fps == pytest.approx(25.0) and hud.median_ms("inference") == 20.0
    out = render(frame.copy(), outputs, prediction, hud, OverlayConfig())
    diff = np.abs(out.astype(int) - frame.astype(int)).sum(axis=2)
    h, w = diff.shape
    assert diff[: h // 6, : w // 4].mean() > 20  # top-k labels, top left
    assert diff[: h // 8, -w // 5 :].mean() > 20  # FPS, top right
    assert diff[-h // 4 :, : w // 3].mean() > 20  # latency panel, bottom left
    assert diff[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].max() == 0  # the middle is untouched
    none = render(frame.copy(), outputs, prediction, hud, OverlayConfig.parse("none"))
    assert np.array_equal(none, frame)


def test_the_tasks_draw_the_camera_overlay_labels():
    frame = _photo()  # 480x640
    outputs = make_postprocess(_engine_facts("detect", ["a", "b"], _DETECTION), LoopConfig())
    prediction = outputs.decode(_one_detection_maps(), frame.shape[:2])  # box x 180..340, y 97..158
    only_labels = OverlayConfig.parse("labels")
    drawn = render(frame.copy(), outputs, prediction, Hud(), only_labels)
    changed = np.argwhere(np.any(drawn != frame, axis=2))
    assert len(changed) > 0
    assert changed[:, 0].min() >= 60 and changed[:, 0].max() <= 160  # only the box and its label above it
    assert changed[:, 1].min() >= 175 and changed[:, 1].max() <= 345
    classify = make_postprocess(_engine_facts("classify", ["7"]), LoopConfig(top_k=1))
    labelled = render(
        frame.copy(), classify, classify.decode(np.ones((1, 1), np.float32), (480, 640)), Hud(), only_labels
    )
    assert not np.array_equal(labelled, frame)


def test_overlay_option_parsing():
    assert OverlayConfig.parse("fps") == OverlayConfig(False, True, False)
    assert OverlayConfig.parse("all") == OverlayConfig()
    with pytest.raises(EdgeresError, match="accepted: a comma list of labels, fps, latency"):
        OverlayConfig.parse("labels,boxes")


def test_recorder_refuses_to_overwrite_and_unknown_containers(tmp_path):
    existing = tmp_path / "out.mkv"
    existing.write_bytes(b"keep me")
    with pytest.raises(EdgeresError, match="already exists; pass --force"):
        VideoRecorder(existing)
    with pytest.raises(EdgeresError, match=r"use a \.mkv \(recommended\), \.mp4 or \.avi"):
        VideoRecorder(tmp_path / "out.gif")
    VideoRecorder(existing, force=True).close()  # nothing written: the old file stays as it was
    assert existing.read_bytes() == b"keep me"


def test_recorder_writes_a_video_ffprobe_reads(tmp_path):
    from fixtures_camera import ffprobe_frames

    frame = _photo()
    rec = VideoRecorder(tmp_path / "a.avi", fps=15)
    for _ in range(7):
        rec.write({}, frame)
    rec.close()
    assert ffprobe_frames(tmp_path / "a.avi") == ("mjpeg", 7)


def test_no_window_on_a_headless_opencv():
    import cv2

    if not re.search(r"GUI:\s+NONE", cv2.getBuildInformation()):
        pytest.skip("this OpenCV has GUI support")
    assert not gui_available()
    with pytest.raises(EdgeresError, match="cannot open a window: this OpenCV has no GUI support"):
        Window()

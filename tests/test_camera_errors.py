"""Bad input to ``edgeres camera``: one ``error:`` line on stderr, exit code 1, no traceback, nothing written."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import assert_user_error, run_cli

pytest_plugins = ["fixtures_camera"]


@pytest.mark.parametrize(
    ("source", "fragments"),
    [
        ("ftp://127.0.0.1/cam", ["unknown source scheme 'ftp://'", "accepted:", "rtsp://", "csi://N"]),
        ("/no/such/clip.mkv", ["source not found", "accepted:"]),
    ],
)
def test_unknown_sources_are_refused(tmp_path, source, fragments):
    proc = run_cli("camera", "--engine", tmp_path, "--source", source, timeout=60)
    assert_user_error(proc, *fragments)


def test_an_engine_without_a_manifest_is_refused(tmp_path, camera_engine, digits_video):
    bare = tmp_path / "bare"
    bare.mkdir()
    onnx = next(camera_engine.glob("*.onnx"))
    shutil.copy(onnx, bare / onnx.name)
    proc = run_cli("camera", "--engine", bare / onnx.name, "--source", digits_video / "digits.mkv", timeout=60)
    assert_user_error(proc, "has no manifest", "edgeres build")


def test_a_detect_manifest_without_decoding_settings_is_refused(tmp_path, camera_engine, digits_video):
    engine = shutil.copytree(camera_engine, tmp_path / "det")
    manifest_file = next(engine.glob("*.manifest.json"))
    manifest = json.loads(manifest_file.read_text())
    manifest["task"] = "detect"
    manifest_file.write_text(json.dumps(manifest))
    record = tmp_path / "out.mkv"
    proc = run_cli(
        "camera", "--engine", engine, "--source", digits_video / "digits.mkv", "--record", record, timeout=60
    )
    assert_user_error(proc, "no 'detection' block", "rebuild")
    assert not record.exists()


def test_an_option_the_engines_task_does_not_take_is_refused(tmp_path, camera_engine, digits_video):
    record = tmp_path / "out.mkv"
    source = ["--engine", camera_engine, "--source", digits_video / "digits.mkv", "--record", record]
    proc = run_cli("camera", *source, "--score-threshold", "0.5", timeout=60)
    assert_user_error(proc, "--score-threshold is for detect models; this one is a classify model")
    proc = run_cli("camera", *source, "--nms-iou", "0.4", timeout=60)
    assert_user_error(proc, "--nms-iou is for detect models")
    assert list(tmp_path.iterdir()) == []  # refused before a recording was started


def test_a_missing_camera_lists_what_was_tried(tmp_path, camera_engine):
    import glob

    if glob.glob("/dev/video9"):
        pytest.skip("this machine has a /dev/video9")
    proc = run_cli("camera", "--engine", camera_engine, "--source", "9", "--open-timeout", "2", timeout=60)
    assert_user_error(
        proc,
        "cannot open camera '9': tried V4L2 /dev/video9: /dev/video9 does not exist",
        "video devices here:",
        "any backend, index 9",
    )


def test_csi_camera_without_one_says_which_pipeline_was_tried(camera_engine):
    proc = run_cli(
        "camera",
        "--engine",
        camera_engine,
        "--source",
        "csi://0",
        "--csi-size",
        "1920x1080",
        "--open-timeout",
        "2",
        timeout=60,
    )
    assert_user_error(
        proc,
        "cannot open CSI camera 'csi://0': tried GStreamer Argus pipeline",
        "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM), width=(int)1920, height=(int)1080",
    )


def test_jetson_decoding_without_gstreamer_is_a_clear_error(camera_engine, digits_video):
    from edgeres.camera.pipelines import machine_facts

    if machine_facts().gstreamer:
        pytest.skip("this OpenCV has GStreamer: the hardware pipeline would really be attempted")
    proc = run_cli(
        "camera", "--engine", camera_engine, "--source", digits_video / "digits.mkv", "--decoder", "jetson", timeout=60
    )
    assert_user_error(
        proc,
        "tried GStreamer hardware decode",
        "parsebin ! nvv4l2decoder ! nvvidconv",
        "this OpenCV has no GStreamer support",
    )


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--realtime"], ["--realtime paces files and image folders", "is live"]),
        (["--fps", "10"], ["--fps sets the rate of image folders", "has its own"]),
        (["--overlay", "boxes"], ["unknown --overlay 'boxes'"]),
        (["--csi-size", "big"], ["--csi-size 'big' is not WIDTHxHEIGHT"]),
    ],
)
def test_conflicting_or_bad_options_are_errors(tmp_path, camera_engine, extra, fragments):
    proc = run_cli("camera", "--engine", camera_engine, "--source", "tcp://127.0.0.1:9", *extra, timeout=60)
    assert_user_error(proc, *fragments)


def test_an_existing_recording_is_never_overwritten_without_force(tmp_path, digits_video):
    record = tmp_path / "keep.mkv"
    record.write_bytes(b"precious")
    proc = run_cli(
        "camera", "--engine", tmp_path, "--source", digits_video / "digits.mkv", "--record", record, timeout=60
    )
    assert_user_error(proc, "already exists; pass --force")
    assert record.read_bytes() == b"precious"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["--source", "tcp://127.0.0.1:9", "--source", "TCP://127.0.0.1:9"],
            ["stream 'TCP://127.0.0.1:9' is given twice (streams 'cam0' and 'cam1')", "give each source once"],
        ),
        (["--source", "0", "--source", "/dev/video0"], ["camera '/dev/video0' is given twice"]),
        (["--source", "a=tcp://127.0.0.1:9", "--source", "a=tcp://127.0.0.1:10"], ["stream name 'a' is used twice"]),
        (
            ["--source", "tcp://127.0.0.1:9", "--source", "tcp://127.0.0.1:10", "--record", "{tmp}/out.mkv"],
            ["--record", "one file for 2 streams", "pass a folder", "--tile"],
        ),
        (["--source", "tcp://127.0.0.1:9", "--sources", "{tmp}/cams.txt"], ["--source (repeated) or with --sources"]),
        (["--sources", "{tmp}/missing.txt"], ["--sources file", "does not exist"]),
        ([], ["no source given", "--sources FILE"]),
        (["--source", "tcp://127.0.0.1:9", "--serve", "80:80:80"], ["--serve '80:80:80' is not [HOST:]PORT"]),
        (["--source", "tcp://127.0.0.1:9", "--restream", "ftp://127.0.0.1/x"], ["--restream", "unknown scheme"]),
        (["--source", "tcp://127.0.0.1:9", "--tile"], ["--tile records all streams into one file"]),
    ],
)
def test_bad_multi_stream_input_is_refused_before_any_work(tmp_path, args, fragments):
    (tmp_path / "cams.txt").write_text("tcp://127.0.0.1:11\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = run_cli("camera", "--engine", tmp_path / "no-engine", *args, timeout=60)
    assert_user_error(proc, *fragments)
    assert not (tmp_path / "out.mkv").exists()


def test_a_live_view_port_in_use_and_an_unreachable_restream_are_one_line_each(tmp_path):
    import socket

    from fixtures_camera import LOOPBACK, free_port

    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = run_cli(
            "camera", "--engine", tmp_path, "--source", "tcp://127.0.0.1:9", "--serve", str(port), timeout=60
        )
    assert_user_error(proc, f"--serve 127.0.0.1:{port}: the port is in use; choose another port")
    dead = free_port()
    proc = run_cli(
        "camera",
        "--engine",
        tmp_path,
        "--source",
        "tcp://127.0.0.1:9",
        "--restream",
        f"rtsp://{LOOPBACK}:{dead}/live",
        timeout=60,
    )
    assert_user_error(
        proc, f"cannot re-stream to rtsp://{LOOPBACK}:{dead}/live", "connection refused", "no RTSP server listens there"
    )


def test_a_live_view_on_all_interfaces_without_a_token_is_a_loud_warning(tmp_path):
    """The run goes on (here it then stops at the missing engine): the warning comes first, the error last."""
    from fixtures_camera import free_port

    port = free_port()
    proc = run_cli(
        "camera",
        "--engine",
        tmp_path / "no-engine",
        "--source",
        "tcp://127.0.0.1:9",
        "--serve",
        f"0.0.0.0:{port}",
        timeout=60,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert (
        lines[0].startswith(
            "warning: !!! the live view listens on 0.0.0.0, reachable from other machines, WITHOUT a token"
        )
        and "--serve-token" in lines[0]
    )
    assert lines[-1].startswith("error: engine not found")

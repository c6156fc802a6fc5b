"""Multi-stream camera parts with small real inputs: naming and checking the run's streams, batching rules, the
tiler, re-stream commands and target checks, and the live view's HTTP server on a loopback port."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest

from edgeres.camera.inference import batching_for
from edgeres.camera.recordings import Tiler, grid, recording_sink
from edgeres.camera.restream import check_target, ffmpeg_command, gstreamer_command
from edgeres.camera.serve import LiveView, parse_serve
from edgeres.camera.sources import plan_streams, read_sources_file, split_name
from edgeres.errors import EdgeresError


def test_split_name_only_takes_a_leading_word():
    assert split_name("front=rtsp://127.0.0.1/cam") == ("front", "rtsp://127.0.0.1/cam")
    assert split_name(" door.2 = tcp://127.0.0.1:5000 ") == ("door.2", "tcp://127.0.0.1:5000")
    assert split_name("rtsp://127.0.0.1/cam?user=a") == (None, "rtsp://127.0.0.1/cam?user=a")
    assert split_name("videotestsrc pattern=ball ! appsink") == (None, "videotestsrc pattern=ball ! appsink")
    assert split_name("/data/clip.mkv") == (None, "/data/clip.mkv")


def test_plan_streams_names_and_refuses_repeats(tmp_path):
    clip = tmp_path / "clip.mkv"
    clip.write_bytes(b"x")
    streams = plan_streams(["tcp://127.0.0.1:5000", f"yard={clip}", "2"])
    assert [(s.name, s.spec.kind) for s in streams] == [("cam0", "stream"), ("yard", "file"), ("cam2", "camera")]
    for texts, fragment in [
        (["0", "/dev/video0"], "camera '/dev/video0' is given twice (streams 'cam0' and 'cam1')"),
        ([str(clip), f"file://{clip}"], "is given twice"),
        (["tcp://127.0.0.1:5000", "TCP://127.0.0.1:5000"], "given twice"),
        (["a=tcp://127.0.0.1:1", "a=tcp://127.0.0.1:2"], "stream name 'a' is used twice"),
        ([], "no source given"),
    ]:
        with pytest.raises(EdgeresError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            plan_streams(texts)


def test_sources_file_skips_comments_and_blank_lines(tmp_path):
    listing = tmp_path / "cams.txt"
    listing.write_text("# yard cameras\n\nfront=rtsp://127.0.0.1:8554/front\n  tcp://127.0.0.1:5000  \n")
    assert read_sources_file(listing) == ["front=rtsp://127.0.0.1:8554/front", "tcp://127.0.0.1:5000"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(EdgeresError, match="lists no source"):
        read_sources_file(tmp_path / "empty.txt")
    with pytest.raises(EdgeresError, match="does not exist"):
        read_sources_file(tmp_path / "missing.txt")


def _engine(shape0, max_batch):
    return SimpleNamespace(
        manifest={"input": {"shape": [shape0, 3, 32, 32], "max_batch": max_batch}}, engine_file="e.onnx"
    )


def test_batching_follows_the_engine_and_the_streams():
    assert batching_for(_engine(-1, 32), 4, 0.01).max_batch == 4  # never more than the streams
    assert batching_for(_engine(-1, 2), 5, 0.01).max_batch == 2  # the engine's largest: streams take turns
    assert batching_for(_engine(-1, 32), 4, 0.01, cap=3).max_batch == 3
    fixed = batching_for(_engine(4, None), 2, 0.01)
    assert (fixed.max_batch, fixed.fixed) == (4, True)  # padded to the fixed batch
    with pytest.raises(EdgeresError, match="takes batches of exactly 4"):
        batching_for(_engine(4, None), 2, 0.01, cap=2)


def test_tiler_puts_each_stream_in_its_cell():
    assert [grid(n) for n in (1, 2, 3, 4, 5, 9)] == [(1, 1), (2, 1), (2, 2), (2, 2), (3, 2), (3, 3)]
    tiler = Tiler(["a", "b", "c"])
    tiler.add({"stream": "a"}, np.full((41, 60, 3), 200, np.uint8))  # odd height: cells get even sides
    tiler.add({"stream": "c"}, np.full((80, 120, 3), 90, np.uint8))  # another size: scaled into the cell
    canvas = tiler.compose()
    assert canvas.shape == (80, 120, 3)
    assert canvas[5, 30, 0] == 200 and canvas[45, 30, 0] == 90  # a top left, c bottom left
    assert canvas[0:15, 60:].max() == 0  # b has no frame yet: black (its name is written at the bottom)


def test_recording_sink_by_stream_count(tmp_path):
    from edgeres.camera.recordings import StreamRecorders, TiledRecorder
    from edgeres.camera.sinks import VideoRecorder

    assert isinstance(recording_sink(tmp_path / "one.mkv", ["cam0"], False, False), VideoRecorder)
    assert isinstance(recording_sink(tmp_path / "all.mkv", ["a", "b"], True, False), TiledRecorder)
    per_stream = recording_sink(tmp_path / "rec", ["a", "b"], False, False)
    assert isinstance(per_stream, StreamRecorders) and (tmp_path / "rec").is_dir()
    assert sorted(r.path.name for r in per_stream.recorders.values()) == ["a.mkv", "b.mkv"]
    with pytest.raises(EdgeresError, match="one file for 2 streams; pass a folder"):
        recording_sink(tmp_path / "x.mkv", ["a", "b"], False, False)
    (tmp_path / "rec" / "b.mkv").write_bytes(b"keep")
    with pytest.raises(EdgeresError, match="already exists"):
        recording_sink(tmp_path / "rec", ["a", "b"], False, False)


def test_restream_commands():
    rtsp = ffmpeg_command("ffmpeg", "rtsp://127.0.0.1:8554/live", (640, 480), 30.0)
    assert rtsp[-5:] == ["-f", "rtsp", "-rtsp_transport", "tcp", "rtsp://127.0.0.1:8554/live"]
    assert "-s" in rtsp and rtsp[rtsp.index("-s") + 1] == "640x480" and "libx264" in rtsp
    assert rtsp[rtsp.index("-g") + 1] == "30"  # a keyframe a second: players can join any time
    rtp = ffmpeg_command("ffmpeg", "rtp://127.0.0.1:5004", (320, 240), 25.0, x264=False, sdp_file="/tmp/s.sdp")
    assert rtp[-5:] == ["-f", "rtp", "-sdp_file", "/tmp/s.sdp", "rtp://127.0.0.1:5004"] and "mpeg4" in rtp
    assert ffmpeg_command("ffmpeg", "udp://127.0.0.1:5000", (320, 240), 30)[-1] == "udp://127.0.0.1:5000?pkt_size=1316"
    gst = " ".join(gstreamer_command("gst-launch-1.0", "rtp://127.0.0.1:5004", (1280, 720), 30))
    assert "rawvideoparse width=1280 height=720 format=bgr framerate=30/1" in gst and "nvv4l2h264enc" in gst
    assert gst.endswith("rtph264pay config-interval=1 pt=96 ! udpsink host=127.0.0.1 port=5004 sync=false")


def test_restream_targets_are_checked_before_any_work():
    with pytest.raises(EdgeresError, match="unknown scheme; accepted: rtsp://"):
        check_target("ftp://127.0.0.1/x")
    with pytest.raises(EdgeresError, match="needs a host and a port"):
        check_target("rtp://127.0.0.1")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EdgeresError, match=f"cannot re-stream to rtsp://127.0.0.1:{port}/x: .*connection refused"):
        check_target(f"rtsp://127.0.0.1:{port}/x")
    assert check_target("udp://127.0.0.1:5000") == "udp://127.0.0.1:5000"


def test_parse_serve():
    assert (parse_serve("8080").host, parse_serve("8080").port) == ("127.0.0.1", 8080)
    assert parse_serve("8080").loopback and not parse_serve("0.0.0.0:8080").loopback
    assert parse_serve("[::1]:9000").host == "::1" and parse_serve("[::1]:9000").loopback
    assert parse_serve("localhost:1").loopback
    for bad in ("abc", "1.2.3.4:", "70000", ":80"):
        with pytest.raises(EdgeresError, match="--serve"):
            parse_serve(bad)


def _get(url: str, token: str | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def test_live_view_serves_health_snapshots_stats_and_guards_with_the_token():
    import cv2

    view = LiveView(parse_serve("127.0.0.1:0"), ["front", "back"], token="s3cret").start()
    try:
        base = f"http://127.0.0.1:{view.port}"
        status, body, _ = _get(f"{base}/health")
        assert status == 503 and json.loads(body)["status"] == "starting"  # no token needed for monitors
        assert _get(f"{base}/stats")[0] == 401 and _get(f"{base}/?token=nope")[0] == 401
        status, page, kind = _get(f"{base}/?token=s3cret")
        assert status == 200 and kind.startswith("text/html") and b'id="card-front"' in page and b"card-back" in page
        image = np.zeros((48, 64, 3), np.uint8)
        image[:, :32] = (80, 220, 80)
        record = {
            "stream": "front",
            "frame": 7,
            "task": "classify",
            "predictions": [{"label": "3", "score": 0.9}],
            "times_ms": {"inference": 2.0, "capture_to_result": 5.0},
        }
        view.write(record, image)
        view.record_done(record)
        status, jpeg, kind = _get(f"{base}/snapshot/front.jpg", token="s3cret")
        decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert status == 200 and kind == "image/jpeg" and decoded.shape == (48, 64, 3)
        assert np.abs(decoded.astype(int) - image).mean() < 8
        stats = json.loads(_get(f"{base}/stats", token="s3cret")[1])["streams"]
        assert stats["front"]["results"] == 1 and stats["front"]["frame"] == 7
        assert stats["front"]["latency_ms"]["inference"] == 2.0 and stats["back"]["results"] == 0
        status, body, _ = _get(f"{base}/health")
        assert status == 503 and json.loads(body) == {"status": "degraded", "streams": 2, "silent": ["back"]}
        assert _get(f"{base}/snapshot/side.jpg", token="s3cret")[0] == 404
        taken = LiveView(parse_serve(f"127.0.0.1:{view.port}"), ["a"])  # the port is now in use
        with pytest.raises(EdgeresError, match=f"--serve 127.0.0.1:{view.port}: the port is in use"):
            taken.start()
    finally:
        view.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{view.port}/health", timeout=2)


def test_a_restream_target_that_fails_mid_run_never_holds_up_the_loop():
    """An RTSP 'server' that accepts and hangs up: FFmpeg fails, the failure is reported with FFmpeg's reason and
    retried with backoff, and handing frames to the re-stream never blocks."""
    import threading
    import time

    from helpers import require_tool

    from edgeres.camera.restream import Restreamer

    require_tool("ffmpeg")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port, stop = listener.getsockname()[1], threading.Event()

    def hang_up():
        while not stop.is_set():
            try:
                listener.accept()[0].close()
            except OSError:
                continue

    threading.Thread(target=hang_up, daemon=True).start()
    events = []
    sink = Restreamer(f"rtsp://127.0.0.1:{port}/live", ["cam0"], lambda level, msg: events.append((level, msg)))
    image = np.zeros((48, 64, 3), np.uint8)
    try:
        slowest = 0.0
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            t = time.perf_counter()
            sink.write({"stream": "cam0"}, image)
            slowest = max(slowest, time.perf_counter() - t)
            time.sleep(1 / 30)
    finally:
        sink.close()
        stop.set()
        listener.close()
    assert slowest < 0.05  # the loop's side never waits for the encoder
    warnings = [m for level, m in events if level == "warning"]
    assert warnings and warnings[0].startswith(f"re-stream to rtsp://127.0.0.1:{port}/live stopped (")
    assert "retrying in 1 s" in warnings[0] and "the loop goes on (1 restart so far)" in warnings[0]
    assert "@ 0x" not in warnings[0]
    assert next(iter(sink.encoders.values())).restarts >= 2

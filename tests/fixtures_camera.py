"""Session fixtures and real servers for the camera-loop tests.

Load with ``pytest_plugins = ["fixtures_camera"]`` (it loads ``fixtures_models``). Everything is real: the
suite's ResNet-18 trained briefly on the bundled digits, built as an FP32 ONNX Runtime engine, the digits test
video, ffmpeg serving MPEG-TS over TCP and GStreamer's RTSP server (python3-gi + gir1.2-gst-rtsp-server-1.0),
both on 127.0.0.1 only. Every process is started with a bounded lifetime and killed by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers import CLI, require_tool, subprocess_env

pytest_plugins = ["fixtures_models"]  # the trained digits model the whole suite shares

VIDEO_SIZE = (320, 240)
VIDEO_FRAMES = 300
VIDEO_FPS = 30.0
LOOPBACK = "127.0.0.1"  # the only address any test server binds or any test client connects to


@pytest.fixture(scope="session")
def camera_engine(trained_engine) -> Path:
    """The suite's one trained digits model (``fixtures_models``: >= 90 % val top-1) as an FP32 ONNX Runtime engine
    folder (max batch 32). Read-only: a test that changes it copies it first."""
    return trained_engine


@pytest.fixture(scope="session")
def digits_video(tmp_path_factory) -> Path:
    """The digits test video (320x240, 300 frames at 30 fps) with labels.json and every frame as a PNG."""
    from edgeres.data.digits_video import write_digits_video

    out = tmp_path_factory.mktemp("digits_video") / "video"
    write_digits_video(out, frames=VIDEO_FRAMES, fps=VIDEO_FPS, size=VIDEO_SIZE, images=True)
    return out


@pytest.fixture(scope="session")
def digits_h264(digits_video) -> Path:
    """The digits video transcoded to H.264 in Matroska by ffmpeg (what IP cameras stream)."""
    ffmpeg = require_tool("ffmpeg")
    out = digits_video.parent / "digits_h264.mkv"
    subprocess.run(
        [
            ffmpeg,
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            str(digits_video / "digits.mkv"),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "15",
            "-pix_fmt",
            "yuv420p",
            str(out),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    return out


def labels_of(video_dir: Path) -> list[str]:
    return [str(v) for v in json.loads((video_dir / "labels.json").read_text())["labels"]]


def digit_order(video_dir: Path) -> list[str]:
    """The video's digits in display order, consecutive repeats merged."""
    order: list[str] = []
    for label in labels_of(video_dir):
        if not order or order[-1] != label:
            order.append(label)
    return order


def follows_order(predicted: list[str], order: list[str], min_run: int = 2) -> float:
    """Share of frames whose label run (>= ``min_run`` frames) appears, in sequence, in the video's digit order.

    For live streams, where a frame's index does not say which video frame it was: the runs of equal
    predictions must walk through the video's digits in order (the order repeats when the video loops).
    """
    runs: list[list] = []
    for label in predicted:
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    best = 0
    for start in range(len(order)):
        pos, matched = start, 0
        for label, count in runs:
            if count < min_run:
                continue
            for step in range(len(order)):  # next occurrence of this label, going forward (cyclic)
                if order[(pos + step) % len(order)] == label:
                    if step <= 2:  # at most 2 digits skipped (dropped frames) between runs
                        matched += count
                        pos = (pos + step) % len(order)
                    break
        best = max(best, matched)
    return best / max(len(predicted), 1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def is_listening(port: int) -> bool:
    """True when a TCP socket listens on 127.0.0.1:port (read from /proc: connecting would use up an
    ffmpeg ``listen=1`` server's only accept)."""
    want = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(parts[1] == want and parts[3] == "0A" for parts in (line.split() for line in lines))


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class FfmpegTcpServer:
    """ffmpeg serving an H.264 video in real time as MPEG-TS on tcp://127.0.0.1:PORT (one client, like a camera).

    H.264 because its stream headers are repeated at every keyframe (MPEG-4 Part 2 copied into MPEG-TS
    carries them once, so a client joining mid-stream cannot decode it).
    """

    def __init__(self, video: Path, port: int, lifetime: float = 90.0):
        self.ffmpeg = require_tool("ffmpeg")
        self.video, self.port, self.lifetime = video, port, lifetime
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"tcp://{LOOPBACK}:{self.port}"

    def start(self) -> FfmpegTcpServer:
        cmd = [
            self.ffmpeg,
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            str(self.video),
            "-t",
            str(self.lifetime),
            "-c",
            "copy",
            "-f",
            "mpegts",
            f"{self.url}?listen=1",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: is_listening(self.port) or self.proc.poll() is not None, 15, "ffmpeg to listen")
        assert self.proc.poll() is None, "ffmpeg exited before listening"
        return self

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process must be able to die
            self.proc.kill()
            self.proc.wait(timeout=10)


RTSP_SERVER = r"""
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

Gst.init(None)
port, video, lifetime = sys.argv[1], sys.argv[2], int(sys.argv[3])
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
escaped = video.replace("\\", "\\\\").replace('"', '\\"')
factory.set_launch(f'( filesrc location="{escaped}" ! matroskademux ! rtph264pay name=pay0 pt=96 config-interval=1 )')
factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)  # interleaved in the RTSP connection: no UDP ports
factory.set_shared(True)
server.get_mount_points().add_factory("/digits", factory)
if server.attach(None) == 0:
    sys.exit("cannot listen on 127.0.0.1:" + port)
loop = GLib.MainLoop()
GLib.timeout_add_seconds(lifetime, loop.quit)
print("ready", flush=True)
loop.run()
"""


def gst_rtsp_python() -> str:
    """A system Python that can import GStreamer's RTSP server bindings (fails on CI, skips elsewhere)."""
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and os.path.exists(candidate):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                if subprocess.run([candidate, "-c", probe], capture_output=True, timeout=30).returncode == 0:
                    return candidate
    message = "GStreamer's RTSP server bindings are missing (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must provide them")
    pytest.skip(message)


@contextlib.contextmanager
def rtsp_server(video: Path, tmp: Path, lifetime: int = 60):
    """GStreamer's RTSP server on 127.0.0.1 serving ``video`` (H.264 in Matroska) at /digits; yields the URL."""
    python = gst_rtsp_python()
    script = tmp / "rtsp_server.py"
    script.write_text(RTSP_SERVER)
    port = free_port()
    proc = subprocess.Popen(
        [python, str(script), str(port), str(video), str(lifetime)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: is_listening(port) or proc.poll() is not None, 20, "the RTSP server to listen")
        assert proc.poll() is None, proc.communicate(timeout=10)
        yield f"rtsp://{LOOPBACK}:{port}/digits"
    finally:
        proc.kill()
        proc.wait(timeout=10)


class CliRun:
    """``edgeres ARGS`` in the background: stdout lines (JSON) and stderr collected by reader threads."""

    def __init__(self, *args, **env: str):
        self.proc = subprocess.Popen(
            [*CLI, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(**env),
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(s, d), daemon=True)
            for s, d in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, into: list) -> None:
        for line in stream:
            into.append(line)

    def records(self) -> list[dict]:
        return [json.loads(line) for line in list(self.out) if line.startswith("{")]

    def wait_records(self, count: int, timeout: float) -> None:
        wait_until(
            lambda: len(self.out) >= count or self.proc.poll() is not None,
            timeout,
            f"{count} JSON lines (stderr so far: {''.join(self.err)[-2000:]})",
        )
        assert len(self.out) >= count, f"exited {self.proc.returncode} early:\n{''.join(self.err)}"

    def finish(self, timeout: float = 30) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for t in self._threads:
            t.join(5)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.err)


def ffprobe_frames(path: Path) -> tuple[str, int]:
    """(codec name, number of decodable video frames) of a file, by decoding every frame with ffprobe."""
    ffprobe = require_tool("ffprobe")
    proc = subprocess.run(
        [
            ffprobe,
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    stream = json.loads(proc.stdout)["streams"][0]
    return stream["codec_name"], int(stream["nb_read_frames"])


def decodes_cleanly(path: Path) -> None:
    """ffmpeg decodes the whole file without a single error (a truncated file would fail here)."""
    ffmpeg = require_tool("ffmpeg")
    proc = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


RTSP_RECORD_SERVER = r"""
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

Gst.init(None)
port, out, lifetime = sys.argv[1], sys.argv[2], int(sys.argv[3])
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
escaped = out.replace("\\", "\\\\").replace('"', '\\"')
factory.set_launch("( rtph264depay name=depay0 ! video/x-h264, stream-format=byte-stream ! "
                   f'filesink location="{escaped}" )')
factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)  # clients push (ANNOUNCE/RECORD), like mediamtx
factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
server.get_mount_points().add_factory("/live", factory)
if server.attach(None) == 0:
    sys.exit("cannot listen on 127.0.0.1:" + port)
loop = GLib.MainLoop()
GLib.timeout_add_seconds(lifetime, loop.quit)
print("ready", flush=True)
loop.run()
"""


@contextlib.contextmanager
def rtsp_record_server(out: Path, tmp: Path, lifetime: int = 60):
    """GStreamer's RTSP server on 127.0.0.1 taking pushed H.264 (RECORD mode) at /live into ``out``;
    yields the URL to push to. The server writes the H.264 it receives as a raw byte stream (ffprobe reads it)."""
    python = gst_rtsp_python()
    script = tmp / "rtsp_record_server.py"
    script.write_text(RTSP_RECORD_SERVER)
    port = free_port()
    proc = subprocess.Popen(
        [python, str(script), str(port), str(out), str(lifetime)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: is_listening(port) or proc.poll() is not None, 20, "the RTSP record server to listen")
        assert proc.poll() is None, proc.communicate(timeout=10)
        yield f"rtsp://{LOOPBACK}:{port}/live"
    finally:
        proc.send_signal(signal.SIGINT)  # the muxer is finalized on EOS only when GLib gets to run; then kill
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def chromium_binary() -> str:
    """Debian's chromium (fails on CI without it, skips elsewhere)."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return require_tool("chromium")


class HeadlessChromium:
    """Debian's Chromium, headless, driven over the DevTools protocol on a loopback port: open a page, run
    JavaScript in it, take a screenshot. A fresh profile, no network services of its own."""

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--hide-scrollbars",
        "--mute-audio",
    )

    def __init__(self, tmp: Path, size: tuple[int, int] = (1400, 900)):
        self.binary = chromium_binary()
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                self.binary,
                *self.FLAGS,
                f"--user-data-dir={tmp / 'chromium-profile'}",
                f"--remote-debugging-port={self.port}",
                "--remote-debugging-address=127.0.0.1",
                f"--window-size={size[0]},{size[1]}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: is_listening(self.port) or self.proc.poll() is not None, 60, "Chromium's DevTools port")
        assert self.proc.poll() is None, "chromium exited at start"
        self._next_id = 0

    def session(self, steps):
        """Run ``await steps(call)`` against the first page; ``call(method, params)`` returns CDP results."""
        import asyncio

        import aiohttp

        async def main():
            async with aiohttp.ClientSession() as http:
                deadline = time.monotonic() + 30
                while True:
                    async with http.get(f"http://{LOOPBACK}:{self.port}/json/list") as r:
                        pages = [t for t in await r.json() if t.get("type") == "page"]
                    if pages or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.2)
                assert pages, "no page target in Chromium"
                async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:

                    async def call(method: str, params: dict | None = None) -> dict:
                        self._next_id += 1
                        my_id = self._next_id
                        await ws.send_json({"id": my_id, "method": method, "params": params or {}})
                        while True:
                            msg = await asyncio.wait_for(ws.receive_json(), 60)
                            if msg.get("id") == my_id:
                                assert "error" not in msg, msg
                                return msg["result"]

                    return await steps(call)

        return asyncio.run(main())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class StreamServers:
    """Several ``FfmpegTcpServer`` on free loopback ports serving the same H.264 video (one client each)."""

    def __init__(self, video: Path, count: int, lifetime: float = 90.0):
        self.servers = [FfmpegTcpServer(video, free_port(), lifetime) for _ in range(count)]

    def __enter__(self) -> list[FfmpegTcpServer]:
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.__exit__()
            raise
        return self.servers

    def __exit__(self, *exc) -> None:
        for server in self.servers:
            server.kill()

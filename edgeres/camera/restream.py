"""Re-streaming the annotated video to other tools (``--restream URL``): VLC, an NVR, another ``edgeres camera``.

Targets:

- ``rtsp://HOST[:PORT]/PATH``: pushed (RTSP ANNOUNCE/RECORD over TCP) to an RTSP server such as mediamtx,
  which then serves it to any number of viewers.
- ``rtp://HOST:PORT``: H.264 over RTP to one receiver. A player needs the session description (SDP): it is
  written to ``--restream-sdp FILE`` (default: a file in the temp folder, named on stderr).
- ``udp://HOST:PORT``: H.264 in MPEG-TS over UDP (``edgeres camera --source udp://@:PORT`` reads it).

One stream is sent as is. Several streams: a URL containing ``{name}`` gets one re-stream per stream (e.g.
``rtsp://127.0.0.1:8554/{name}``); otherwise the streams are tiled into one video.

The encoder is FFmpeg (libx264, ultrafast, zero-latency tuning, a keyframe every second; MPEG-4 Part 2 when
this FFmpeg has no libx264). On a Jetson whose GStreamer has ``nvv4l2h264enc``, the hardware encoder is used
through ``gst-launch-1.0`` instead. Frames go to the encoder through a newest-frame-wins slot and a writer
thread, so a slow network never holds up the loop. An encoder that exits (the server went away) is
reported and restarted with backoff; the loop goes on.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from edgeres.camera.pipelines import is_jetson
from edgeres.camera.recordings import Tiler
from edgeres.camera.slots import FrameSlot, SlotClosed
from edgeres.errors import EdgeresError

SCHEMES = ("rtsp", "rtp", "udp")
ACCEPTED_RESTREAM = "rtsp://HOST[:PORT]/PATH (an RTSP server to push to), rtp://HOST:PORT or udp://HOST:PORT"
EventFn = Callable[[str, str], None]


def check_target(url: str, open_timeout: float = 3.0) -> str:
    """Check a ``--restream`` URL before any work: its form, and for rtsp:// that a server accepts connections.

    Returns:
        The URL.

    Raises:
        EdgeresError: an unknown scheme, no host or port, an unknown host, or an RTSP server that cannot be
            reached.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise EdgeresError(f"--restream '{url}': unknown scheme; accepted: {ACCEPTED_RESTREAM}")
    try:
        port = parts.port or (554 if scheme == "rtsp" else None)
    except ValueError:
        raise EdgeresError(f"--restream '{url}': bad port") from None
    if not parts.hostname or port is None:
        raise EdgeresError(f"--restream '{url}' needs a host and a port; accepted: {ACCEPTED_RESTREAM}")
    try:
        socket.getaddrinfo(parts.hostname, port)
    except socket.gaierror:
        raise EdgeresError(f"--restream '{url}': unknown host '{parts.hostname}'") from None
    if scheme == "rtsp":
        try:
            with socket.create_connection((parts.hostname, port), timeout=open_timeout):
                pass
        except OSError as exc:
            reason = (
                "connection refused (no RTSP server listens there; start one, e.g. mediamtx, or use "
                "rtp://HOST:PORT to send to a player directly)"
                if isinstance(exc, ConnectionRefusedError)
                else exc.strerror or str(exc)
            )
            raise EdgeresError(f"cannot re-stream to {url}: {parts.hostname}:{port}: {reason}") from None
    return url


@functools.cache
def ffmpeg_has_libx264(ffmpeg: str) -> bool:
    out = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30).stdout
    return " libx264 " in out


@functools.cache
def jetson_encoder() -> str | None:
    """``gst-launch-1.0`` when this is a Jetson whose GStreamer has the hardware H.264 encoder, else None."""
    launch, inspect = shutil.which("gst-launch-1.0"), shutil.which("gst-inspect-1.0")
    if not (is_jetson() and launch and inspect):
        return None
    ok = subprocess.run([inspect, "nvv4l2h264enc"], capture_output=True, timeout=30).returncode == 0
    return launch if ok else None


def ffmpeg_command(
    ffmpeg: str, url: str, size: tuple[int, int], fps: float, x264: bool = True, sdp_file: str | None = None
) -> list[str]:
    """The FFmpeg command that reads raw BGR frames on stdin and sends them to ``url``.

    Frames are timestamped by their arrival (a live loop's rate varies); a keyframe every second lets a
    player join at any time.
    """
    w, h = size
    gop = str(max(1, round(fps)))
    encoder = (
        ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0", "-pix_fmt", "yuv420p"]
        if x264
        else ["-c:v", "mpeg4", "-q:v", "5", "-bf", "0", "-pix_fmt", "yuv420p"]
    )
    cmd = [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-use_wallclock_as_timestamps",
        "1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "bgr24",
        "-s",
        f"{w}x{h}",
        "-i",
        "pipe:0",
        "-an",
        *encoder,
        "-g",
        gop,
    ]
    scheme = urlsplit(url).scheme.lower()
    if scheme == "rtsp":
        return [*cmd, "-f", "rtsp", "-rtsp_transport", "tcp", url]
    if scheme == "rtp":
        return [*cmd, "-f", "rtp", *(["-sdp_file", sdp_file] if sdp_file else []), url]
    return [*cmd, "-f", "mpegts", f"{url}{'&' if '?' in url else '?'}pkt_size=1316"]


def gstreamer_command(launch: str, url: str, size: tuple[int, int], fps: float) -> list[str]:
    """The gst-launch-1.0 command for a Jetson's hardware encoder (nvv4l2h264enc) reading BGR on stdin."""
    w, h = size
    parts = urlsplit(url)
    head = (
        f"fdsrc fd=0 ! rawvideoparse width={w} height={h} format=bgr framerate={max(1, round(fps))}/1 "
        f"! videoconvert ! video/x-raw,format=BGRx ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 "
        f"! nvv4l2h264enc insert-sps-pps=true iframeinterval={max(1, round(fps))} idrinterval={max(1, round(fps))} "
        "! h264parse"
    )
    scheme = parts.scheme.lower()
    if scheme == "rtsp":
        tail = f"rtspclientsink location={url} protocols=tcp"
    elif scheme == "rtp":
        tail = f"rtph264pay config-interval=1 pt=96 ! udpsink host={parts.hostname} port={parts.port} sync=false"
    else:
        tail = f"mpegtsmux ! udpsink host={parts.hostname} port={parts.port} sync=false"
    return [launch, "-q", "-e", *f"{head} ! {tail}".split()]


class Encoder(threading.Thread):
    """One re-stream: a writer thread that feeds an encoder process the newest frame and restarts it if it
    exits."""

    def __init__(self, url: str, fps: float, on_event: EventFn, sdp_file: str | None = None):
        super().__init__(name="edgeres-restream", daemon=True)
        self.url, self.fps, self.on_event, self.sdp_file = url, fps, on_event, sdp_file
        self.slot = FrameSlot(newest_wins=True)
        self.frames = 0
        self.restarts = 0
        self.proc: subprocess.Popen | None = None
        self.size: tuple[int, int] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=5)
        self.spawned_at = 0.0

    def command(self) -> list[str]:
        launch = jetson_encoder()
        if launch is not None:
            return gstreamer_command(launch, self.url, self.size, self.fps)
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise EdgeresError("--restream needs ffmpeg on PATH (apt-get install ffmpeg), or GStreamer on a Jetson")
        return ffmpeg_command(ffmpeg, self.url, self.size, self.fps, ffmpeg_has_libx264(ffmpeg), self.sdp_file)

    def _spawn(self) -> None:
        self._stderr.clear()  # the first line FFmpeg prints after a start names the cause of a failure
        self.spawned_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        threading.Thread(target=self._pump_stderr, args=(self.proc,), daemon=True).start()

    def _announce_sdp(self) -> None:
        """Say once where an rtp:// re-stream's SDP is (FFmpeg writes it when the stream starts)."""
        if self.sdp_file and self.restarts == 0 and urlsplit(self.url).scheme.lower() == "rtp":
            self.on_event(
                "note",
                f"re-stream to {self.url}: session description in {self.sdp_file} (play it with "
                f"ffplay -protocol_whitelist file,udp,rtp -i {self.sdp_file})",
            )

    def _pump_stderr(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            text = line.decode(errors="replace").strip()
            if text:
                self._stderr.append(text)

    def put(self, image: np.ndarray) -> None:
        self.slot.put(image)

    def run(self) -> None:
        delay = 1.0
        while True:
            try:
                image = self.slot.get(0.5)
            except SlotClosed:
                return
            if image is None:
                continue
            if self.size is None:
                h, w = image.shape[:2]
                self.size = (w - w % 2, h - h % 2)
            if (image.shape[1], image.shape[0]) != self.size:
                import cv2

                image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
            if self.proc is None:
                self._spawn()
                self._announce_sdp()
            try:
                self.proc.stdin.write(np.ascontiguousarray(image).tobytes())
                self.frames += 1
                if time.perf_counter() - self.spawned_at > 10.0:  # a write succeeds (pipe buffer) before a
                    delay = 1.0  # failing encoder exits: only an encoder that kept running resets the backoff
            except (BrokenPipeError, OSError, ValueError):
                self._lost(delay)
                delay = min(delay * 2, 8.0)

    def _lost(self, delay: float) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
            self.proc.wait(5)
        time.sleep(0.1)  # let the stderr reader take the last line
        reason = self._stderr[0] if self._stderr else f"the encoder exited with code {self.proc.returncode}"
        reason = re.sub(r"^\[[^\]]* @ 0x[0-9a-f]+\]\s*", "", reason)  # FFmpeg's "[rtsp @ 0x5600...]" prefix
        self.restarts += 1
        if self.restarts in (1, 3) or self.restarts % 10 == 0:  # like reconnects: the first, the third, then rarely
            self.on_event(
                "warning",
                f"re-stream to {self.url} stopped ({reason}); retrying in {delay:g} s (backoff doubling up to 8 s), "
                f"the loop goes on ({self.restarts} restart{'s' * (self.restarts > 1)} so far)",
            )
        self.proc = None
        end = time.perf_counter() + delay
        while time.perf_counter() < end and not self.slot.closed:
            time.sleep(0.1)

    def close(self) -> None:
        """Finish: close the encoder's input (it flushes and exits), then wait for it briefly."""
        self.slot.close()
        self.join(10)
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Restreamer:
    """The re-stream sink: one encoder per stream (a ``{name}`` URL), or one of all streams tiled."""

    needs_image = True

    def __init__(self, url: str, names: list[str], on_event: EventFn, fps: float = 30.0, sdp_file: str | None = None):
        self.url, self.names, self.on_event = url, list(names), on_event
        self.per_stream = "{name}" in url
        self.fps, self.sdp_file = fps, sdp_file
        self.tiler = None if self.per_stream or len(names) == 1 else Tiler(names)
        self.encoders: dict[str, Encoder] = {}

    def _encoder(self, key: str) -> Encoder:
        encoder = self.encoders.get(key)
        if encoder is None:
            url = self.url.replace("{name}", key) if self.per_stream else self.url
            sdp = self.sdp_file.replace("{name}", key) if self.sdp_file else None
            if sdp is None and urlsplit(url).scheme.lower() == "rtp":
                import tempfile

                sdp = str(Path(tempfile.gettempdir()) / f"edgeres-restream-{urlsplit(url).port}.sdp")
            encoder = self.encoders[key] = Encoder(url, self.fps, self.on_event, sdp)
            encoder.start()
        return encoder

    def write(self, record: dict, image: np.ndarray | None) -> None:
        if image is None:
            return
        if self.tiler is not None:
            self.tiler.add(record, image)
            return
        self._encoder(record["stream"] if self.per_stream else "all").put(image)

    def end_batch(self) -> None:
        if self.tiler is not None and self.tiler.dirty:
            self._encoder("all").put(self.tiler.compose())

    @property
    def frames(self) -> int:
        return sum(e.frames for e in self.encoders.values())

    def close(self) -> None:
        for encoder in self.encoders.values():
            encoder.close()

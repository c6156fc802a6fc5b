"""Reading a source: open it with timeouts (every way in ``open_plan``, each with a deadline) and read frames.

Every open has a deadline (FFmpeg's open timeout, and a watchdog around the call for every backend)
and FFmpeg reads have a read timeout; a read that blocks in another backend is caught by the loop's
stall timeout. A dead source never hangs the loop.
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from edgeres.camera.pipelines import Facts, OpenAttempt, machine_facts, open_plan
from edgeres.camera.sources import SourceConfig, SourceOpenError, SourceSpec
from edgeres.errors import DataError, require
from edgeres.processing import IMAGE_EXTENSIONS, read_image


@dataclass
class ReadResult:
    """One read: ``ok`` with an image, ``bad`` (a frame that failed to decode) or ``end`` (EOF or a lost stream)."""

    status: str
    image: np.ndarray | None = None
    source_ts: float = 0.0
    captured: float = 0.0


def video_devices() -> list[str]:
    return sorted(glob.glob("/dev/video*"))


class VideoReader:
    """A source read through OpenCV's VideoCapture (every kind but image folders)."""

    def __init__(self, spec: SourceSpec, cfg: SourceConfig, facts: Facts | None = None):
        self.spec, self.cfg = spec, cfg
        self.facts = facts
        self.cap = None
        self.opened_with: str | None = None
        self.fps: float | None = None
        self.expected_frames: int | None = None  # a file's frame count as its header declares it
        self._t0: float | None = None

    def open(self) -> None:
        """Open the source, trying each way in ``open_plan``.

        Raises:
            SourceOpenError: nothing worked; the message lists every attempt and its reason.
        """
        cv2 = require("cv2", "desktop")
        # FFmpeg's own log lines ("[tcp @ 0x...] Connection refused") would break the one-line error
        # rule; the reasons are reported by edgeres instead. Read once, at the FFmpeg backend's first use.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        facts = self.facts or machine_facts()
        reasons = []
        for attempt in open_plan(self.spec, self.cfg, facts):
            if attempt.backend == "GSTREAMER" and not facts.gstreamer:
                reasons.append(
                    f"{attempt.label}: this OpenCV has no GStreamer support ('GStreamer: NO' in "
                    "cv2.getBuildInformation()); on a Jetson use JetPack's OpenCV"
                )
                continue
            cap = _open_with_deadline(cv2, attempt, self.spec, self.cfg)
            if isinstance(cap, str):
                reasons.append(f"{attempt.label}: {cap}")
                continue
            self.cap, self.opened_with = cap, attempt.label
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if 1.0 <= fps <= 1000.0 else None
            if self.spec.kind == "file":
                count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
                self.expected_frames = int(count) if 0 < count < 1e9 else None
            if self.spec.kind == "camera":
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's queue would add frames of latency
            self._t0 = self._t0 if self._t0 is not None else time.perf_counter()
            return
        raise SourceOpenError(f"cannot open {self.spec.describe()}: tried " + "; ".join(reasons))

    def read(self) -> ReadResult:
        """Grab and decode one frame (blocks at most the read timeout for FFmpeg sources)."""
        cv2 = require("cv2", "desktop")
        if self.cap is None or not self.cap.grab():
            return ReadResult("end")
        captured = time.perf_counter()
        ok, image = self.cap.retrieve()
        if not ok or image is None or image.size == 0:
            return ReadResult("bad", captured=captured)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        # Files: the frame's position; live sources: its arrival since the first open (kept across reconnects).
        ts = captured - self._t0 if self.spec.live else self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        return ReadResult("ok", image, ts, captured)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


@contextlib.contextmanager
def opencv_log_level(level_name: str = "ERROR"):
    """Set OpenCV's log level while inside (it is process-wide), then put the old level back.

    The loop reports timeouts, lost streams and bad frames itself, once, in its own words; OpenCV's
    "[ WARN:0@...]" lines for the same events would only add noise to stderr.
    """
    cv2 = require("cv2", "desktop")
    log = cv2.utils.logging
    old = log.getLogLevel()
    log.setLogLevel(getattr(log, f"LOG_LEVEL_{level_name}"))
    try:
        yield
    finally:
        log.setLogLevel(old)


def _open_with_deadline(cv2, attempt: OpenAttempt, spec: SourceSpec, cfg: SourceConfig):
    """Open one attempt in a helper thread: a VideoCapture, or the reason it failed (a string).

    The watchdog matters for backends that ignore OpenCV's open timeout (V4L2, some GStreamer
    elements): the call is abandoned after the deadline instead of hanging the loop.
    """
    api = {"FFMPEG": cv2.CAP_FFMPEG, "GSTREAMER": cv2.CAP_GSTREAMER, "V4L2": cv2.CAP_V4L2, "ANY": cv2.CAP_ANY}
    # Only FFmpeg is given OpenCV's timeout parameters: a backend that does not know a parameter refuses
    # to open at all. The others rely on this watchdog (open) and the loop's stall timeout (reads).
    params = (
        [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(cfg.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(cfg.read_timeout * 1000),
        ]
        if attempt.backend == "FFMPEG"
        else []
    )
    box: dict = {}

    def work() -> None:
        try:
            with opencv_log_level("SILENT"):  # the reason is reported below, in one line
                cap = cv2.VideoCapture(attempt.target, api[attempt.backend], params)
            box["cap"] = cap if cap.isOpened() else None
        except cv2.error as exc:
            box["error"] = str(exc).strip().splitlines()[-1]

    thread = threading.Thread(target=work, name="edgeres-open", daemon=True)
    thread.start()
    thread.join(cfg.open_timeout + 5.0)
    if thread.is_alive():
        return f"did not finish opening within {cfg.open_timeout + 5.0:.0f} s (abandoned)"
    if box.get("cap") is not None:
        return box["cap"]
    return box.get("error") or failure_reason(spec, attempt, cfg)


def failure_reason(spec: SourceSpec, attempt: OpenAttempt, cfg: SourceConfig) -> str:
    """Why an attempt most likely failed, found by looking at the device, file or server afterwards."""
    if spec.kind == "camera":
        device = attempt.target if isinstance(attempt.target, str) else f"/dev/video{attempt.target}"
        if not Path(device).exists():
            return f"{device} does not exist (video devices here: {', '.join(video_devices()) or 'none'})"
        if not os.access(device, os.R_OK | os.W_OK):
            return f"no permission to open {device} (add the user to the 'video' group)"
        return f"{device} exists but did not open (busy, or not a capture device)"
    if spec.kind == "file":
        return "FFmpeg could not read it as a video (not a video file, or a codec this OpenCV's FFmpeg lacks)"
    if spec.kind == "stream":
        return stream_failure_reason(spec.target, cfg.open_timeout)
    return "the pipeline did not start (check it with gst-launch-1.0)"


def stream_failure_reason(url: str, timeout: float) -> str:
    """Connect to a TCP-based stream's host to say whether it is refused, silent or just not sending video."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "udp":
        return f"no video arrived on {parts.netloc or url} within {timeout:g} s"
    default_port = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}.get(scheme)
    try:
        port = parts.port or default_port
    except ValueError:
        return f"bad port in {url}"
    if port is None:
        return f"{url} names no port"
    try:
        with socket.create_connection((parts.hostname, port), timeout=min(timeout, 3.0)):
            pass
    except socket.gaierror:
        return f"unknown host '{parts.hostname}'"
    except ConnectionRefusedError:
        return f"connection refused by {parts.hostname}:{port} (nothing is serving there)"
    except OSError as exc:
        return f"cannot connect to {parts.hostname}:{port} ({exc.strerror or exc})"
    return f"{parts.hostname}:{port} accepts connections but no video could be read from it within {timeout:g} s"


class ImageFolderReader:
    """A folder of images read in name order at ``fps`` frames per (source) second."""

    def __init__(self, spec: SourceSpec, cfg: SourceConfig):
        self.spec, self.cfg = spec, cfg
        self.fps = float(cfg.fps or 30.0)
        self.opened_with = "image folder"
        self.files: list[Path] = []
        self.position = 0

    def open(self) -> None:
        """List the folder's images.

        Raises:
            SourceOpenError: the folder holds no images.
        """
        folder = Path(self.spec.target)
        self.files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.files:
            raise SourceOpenError(f"image folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        self.position = 0

    def read(self) -> ReadResult:
        if self.position >= len(self.files):
            return ReadResult("end")
        path = self.files[self.position]
        ts = self.position / self.fps
        self.position += 1
        try:
            image = read_image(path)
        except DataError:
            return ReadResult("bad", source_ts=ts, captured=time.perf_counter())
        return ReadResult("ok", image, ts, time.perf_counter())

    def close(self) -> None:
        pass


def make_reader(spec: SourceSpec, cfg: SourceConfig, facts: Facts | None = None):
    """The reader for a parsed source (not opened yet)."""
    return ImageFolderReader(spec, cfg) if spec.kind == "images" else VideoReader(spec, cfg, facts)

"""Video sources: parse ``--source``, plan the ways to open it, open it with timeouts and read frames.

Kinds: ``camera`` (an index or /dev/videoN, through V4L2), ``file`` (a video file, FFmpeg), ``stream``
(rtsp/http/tcp/udp URLs, FFmpeg), ``csi`` (a Jetson CSI camera through an nvarguscamerasrc pipeline),
``gstreamer`` (a raw pipeline ending in appsink) and ``images`` (a folder, read in name order). On a
Jetson whose OpenCV has GStreamer, files and rtsp:// streams are tried first through the hardware
decoder (nvv4l2decoder/nvvidconv into an appsink that keeps one buffer), then through FFmpeg.

Every open has a deadline (FFmpeg's open timeout, and a watchdog around the call for every backend)
and FFmpeg reads have a read timeout; a read that blocks in another backend is caught by the loop's
stall timeout. A dead source never hangs the loop.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from edgeres.errors import DataError, EdgeresError, require
from edgeres.processing import IMAGE_EXTENSIONS, read_image

KINDS = ("camera", "file", "stream", "csi", "gstreamer", "images")
LIVE_KINDS = ("camera", "stream", "csi", "gstreamer")
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "tcp", "udp")
DECODERS = ("auto", "cpu", "jetson")
ACCEPTED = ("a camera index or /dev/videoN, a video file, an rtsp://, rtsps://, http://, https://, tcp:// or udp:// "
            "URL, csi://N, a GStreamer pipeline ending in appsink, or a folder of images")


class SourceOpenError(EdgeresError):
    """A source could not be opened; the message lists every way that was tried and why it failed."""


@dataclass(frozen=True)
class SourceConfig:
    """How to open and read a source.

    ``fps`` sets the rate of an image folder (timestamps, pacing, recording; default 30) and, with
    ``--realtime``, the pacing rate of a file instead of its own.
    """

    source: str
    decoder: str = "auto"
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    fps: float | None = None
    csi_size: tuple[int, int] = (1280, 720)
    csi_fps: int = 30


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``--source``: its kind and normalized target (index, path, URL or pipeline)."""

    kind: str
    target: str
    text: str

    @property
    def live(self) -> bool:
        return self.kind in LIVE_KINDS

    @property
    def reconnects(self) -> bool:
        """Live sources that can come back: network streams and cameras (a raw pipeline is the user's)."""
        return self.kind in ("camera", "stream", "csi")

    def describe(self) -> str:
        names = {"camera": "camera", "file": "video file", "stream": "stream", "csi": "CSI camera",
                 "gstreamer": "GStreamer pipeline", "images": "image folder"}
        return f"{names[self.kind]} '{self.text}'"


@dataclass(frozen=True)
class OpenAttempt:
    """One way to open a source: a label for messages, an OpenCV backend name and what to pass it."""

    label: str
    backend: str  # "FFMPEG", "GSTREAMER", "V4L2" or "ANY"
    target: str | int


@dataclass(frozen=True)
class Facts:
    """What this machine's OpenCV can do (tests pass their own)."""

    gstreamer: bool
    jetson: bool


@dataclass
class ReadResult:
    """One read: ``ok`` with an image, ``bad`` (a frame that failed to decode) or ``end`` (EOF or a lost stream)."""

    status: str
    image: np.ndarray | None = None
    source_ts: float = 0.0
    captured: float = 0.0


def parse_source(text: str) -> SourceSpec:
    """Classify a ``--source`` string.

    Args:
        text: what the user gave.

    Returns:
        The source's kind and normalized target.

    Raises:
        EdgeresError: an unknown URL scheme, a bad csi:// index, a pipeline without appsink, or a path that
            does not exist; the message lists what is accepted.
    """
    text = str(text).strip()
    if not text:
        raise EdgeresError(f"empty --source; accepted: {ACCEPTED}")
    if text.isdigit():
        return SourceSpec("camera", text, text)
    if re.fullmatch(r"/dev/video\d+", text):
        return SourceSpec("camera", text, text)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme:
        name = scheme.group(1).lower()
        if name in STREAM_SCHEMES:
            parts = urlsplit(text)
            if not parts.hostname and name != "udp":
                raise EdgeresError(f"--source '{text}' has no host; e.g. {name}://127.0.0.1:8554/stream")
            return SourceSpec("stream", text, text)
        if name == "csi":
            rest = text[len("csi://"):]
            if not rest.isdigit():
                raise EdgeresError(f"--source '{text}': csi:// takes a sensor index, e.g. csi://0")
            return SourceSpec("csi", rest, text)
        if name == "file":
            return _path_source(text[len("file://"):], text)
        raise EdgeresError(f"unknown source scheme '{name}://' in '{text}'; accepted: {ACCEPTED}")
    if "!" in text:
        if not re.search(r"\bappsink\b", text):
            raise EdgeresError(f"GStreamer pipeline '{text}' must end in an appsink (e.g. '... ! videoconvert ! "
                               "video/x-raw, format=BGR ! appsink drop=true max-buffers=1')")
        return SourceSpec("gstreamer", text, text)
    return _path_source(text, text)


def _path_source(path_text: str, text: str) -> SourceSpec:
    path = Path(path_text).expanduser()
    if path.is_dir():
        return SourceSpec("images", str(path), text)
    if path.is_file():
        return SourceSpec("file", str(path), text)
    raise EdgeresError(f"source not found: '{text}' is not an existing file or folder; accepted: {ACCEPTED}")


@functools.cache
def machine_facts() -> Facts:
    """Whether this OpenCV has GStreamer and whether this is a Jetson (looked up once per process)."""
    cv2 = require("cv2", "desktop")
    info = cv2.getBuildInformation()
    gst = bool(re.search(r"GStreamer:\s+YES", info)) and cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER)
    return Facts(gstreamer=gst, jetson=is_jetson())


def is_jetson() -> bool:
    """True on an NVIDIA Jetson (L4T release file or device-tree model)."""
    if Path("/etc/nv_tegra_release").exists():
        return True
    try:
        return "jetson" in Path("/proc/device-tree/model").read_text(errors="replace").lower()
    except OSError:
        return False


def _gst_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def appsink(live: bool) -> str:
    """An appsink that keeps one buffer: live sources drop old buffers, files block (every frame is read)."""
    return f"appsink drop={'true' if live else 'false'} max-buffers=1 sync=false"


_TO_BGR = "nvvidconv ! video/x-raw, format=(string)BGRx ! videoconvert ! video/x-raw, format=(string)BGR"


def csi_pipeline(sensor_id: int, size: tuple[int, int] = (1280, 720), fps: int = 30, flip: int = 0) -> str:
    """The GStreamer pipeline for a Jetson CSI camera (Argus), ending in a one-buffer, dropping appsink.

    Args:
        sensor_id: the camera's sensor index (csi://N).
        size: capture (width, height); must be a mode the sensor supports.
        fps: capture frame rate.
        flip: nvvidconv flip-method (0: none, 2: rotate 180).
    """
    w, h = size
    return (f"nvarguscamerasrc sensor-id={int(sensor_id)} ! video/x-raw(memory:NVMM), width=(int){w}, "
            f"height=(int){h}, framerate=(fraction){int(fps)}/1, format=(string)NV12 ! nvvidconv flip-method={flip} "
            f"! video/x-raw, format=(string)BGRx ! videoconvert ! video/x-raw, format=(string)BGR ! {appsink(True)}")


def jetson_decode_pipeline(spec: SourceSpec, open_timeout: float = 10.0) -> str:
    """Hardware decoding on a Jetson: file or rtsp:// -> parsebin -> nvv4l2decoder -> nvvidconv -> BGR appsink.

    ``parsebin`` finds the container and codec (H.264, H.265, VP8/9, MPEG-4), so no codec has to be named.

    Raises:
        EdgeresError: the source is not a file or an rtsp(s):// stream.
    """
    if spec.kind == "file":
        src = f"filesrc location={_gst_quote(str(Path(spec.target).resolve()))}"
    elif spec.kind == "stream" and spec.target.lower().startswith(("rtsp://", "rtsps://")):
        us = int(open_timeout * 1e6)
        src = f"rtspsrc location={_gst_quote(spec.target)} latency=100 protocols=tcp tcp-timeout={us} timeout={us}"
    else:
        raise EdgeresError(f"Jetson hardware decoding reads files and rtsp:// streams, not {spec.describe()}")
    return f"{src} ! parsebin ! nvv4l2decoder ! {_TO_BGR} ! {appsink(spec.live)}"


def open_plan(spec: SourceSpec, cfg: SourceConfig, facts: Facts) -> list[OpenAttempt]:
    """Every way to open ``spec``, in the order they are tried.

    Raises:
        EdgeresError: ``--decoder`` does not apply to this kind of source.
    """
    if cfg.decoder not in DECODERS:
        raise EdgeresError(f"unknown --decoder '{cfg.decoder}'; accepted: {', '.join(DECODERS)}")
    hw_ok = spec.kind == "file" or (spec.kind == "stream" and spec.target.lower().startswith(("rtsp://", "rtsps://")))
    if cfg.decoder == "jetson" and not hw_ok:
        raise EdgeresError(f"--decoder jetson decodes files and rtsp:// streams in hardware, not {spec.describe()}")
    if spec.kind == "camera":
        device = spec.target if spec.target.startswith("/dev/") else f"/dev/video{spec.target}"
        index = int(spec.target) if spec.target.isdigit() else int(device[len("/dev/video"):])
        return [OpenAttempt(f"V4L2 {device}", "V4L2", device), OpenAttempt(f"any backend, index {index}", "ANY", index)]
    if spec.kind == "csi":
        pipe = csi_pipeline(int(spec.target), cfg.csi_size, cfg.csi_fps)
        return [OpenAttempt(f"GStreamer Argus pipeline '{pipe}'", "GSTREAMER", pipe)]
    if spec.kind == "gstreamer":
        return [OpenAttempt("GStreamer pipeline", "GSTREAMER", spec.target)]
    plan = []
    if cfg.decoder == "jetson" or (cfg.decoder == "auto" and hw_ok and facts.jetson and facts.gstreamer):
        pipe = jetson_decode_pipeline(spec, cfg.open_timeout)
        plan.append(OpenAttempt(f"GStreamer hardware decode '{pipe}'", "GSTREAMER", pipe))
    if cfg.decoder != "jetson":
        plan.append(OpenAttempt("FFmpeg", "FFMPEG", spec.target))
    return plan


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
                reasons.append(f"{attempt.label}: this OpenCV has no GStreamer support ('GStreamer: NO' in "
                               "cv2.getBuildInformation()); on a Jetson use JetPack's OpenCV")
                continue
            cap = _open_with_deadline(cv2, attempt, self.spec, self.cfg)
            if isinstance(cap, str):
                reasons.append(f"{attempt.label}: {cap}")
                continue
            self.cap, self.opened_with = cap, attempt.label
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if 1.0 <= fps <= 1000.0 else None
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
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(cfg.open_timeout * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cfg.read_timeout * 1000)] if attempt.backend == "FFMPEG" else []
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

"""How to open a source: the ways to try, in order (``open_plan``), and the GStreamer pipelines for a Jetson's
CSI cameras and hardware decoder.

On a Jetson whose OpenCV has GStreamer, files and rtsp:// streams are tried first through the hardware
decoder (nvv4l2decoder/nvvidconv into an appsink that keeps one buffer), then through FFmpeg.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from edgeres.camera.sources import SourceConfig, SourceSpec
from edgeres.errors import EdgeresError, require

DECODERS = ("auto", "cpu", "jetson")


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
    return (
        f"nvarguscamerasrc sensor-id={int(sensor_id)} ! video/x-raw(memory:NVMM), width=(int){w}, "
        f"height=(int){h}, framerate=(fraction){int(fps)}/1, format=(string)NV12 ! nvvidconv flip-method={flip} "
        f"! video/x-raw, format=(string)BGRx ! videoconvert ! video/x-raw, format=(string)BGR ! {appsink(True)}"
    )


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
        index = int(spec.target) if spec.target.isdigit() else int(device[len("/dev/video") :])
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

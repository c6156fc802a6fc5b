"""What to read: parse ``--source`` (one source's kind and target) and the list of named streams a run reads
(``--source`` repeated, or ``--sources FILE``).

Kinds: ``camera`` (an index or /dev/videoN, through V4L2), ``file`` (a video file, FFmpeg), ``stream``
(rtsp/http/tcp/udp URLs, FFmpeg), ``csi`` (a Jetson CSI camera through an nvarguscamerasrc pipeline),
``gstreamer`` (a raw pipeline ending in appsink) and ``images`` (a folder, read in name order). How each
kind is opened is ``edgeres.camera.pipelines``; reading it is ``edgeres.camera.readers``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgeres.errors import EdgeresError

KINDS = ("camera", "file", "stream", "csi", "gstreamer", "images")
LIVE_KINDS = ("camera", "stream", "csi", "gstreamer")
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "tcp", "udp")
ACCEPTED = (
    "a camera index or /dev/videoN, a video file, an rtsp://, rtsps://, http://, https://, tcp:// or udp:// "
    "URL, csi://N, a GStreamer pipeline ending in appsink, or a folder of images"
)


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
        names = {
            "camera": "camera",
            "file": "video file",
            "stream": "stream",
            "csi": "CSI camera",
            "gstreamer": "GStreamer pipeline",
            "images": "image folder",
        }
        return f"{names[self.kind]} '{self.text}'"


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
            rest = text[len("csi://") :]
            if not rest.isdigit():
                raise EdgeresError(f"--source '{text}': csi:// takes a sensor index, e.g. csi://0")
            return SourceSpec("csi", rest, text)
        if name == "file":
            return _path_source(text[len("file://") :], text)
        raise EdgeresError(f"unknown source scheme '{name}://' in '{text}'; accepted: {ACCEPTED}")
    if "!" in text:
        if not re.search(r"\bappsink\b", text):
            raise EdgeresError(
                f"GStreamer pipeline '{text}' must end in an appsink (e.g. '... ! videoconvert ! "
                "video/x-raw, format=BGR ! appsink drop=true max-buffers=1')"
            )
        return SourceSpec("gstreamer", text, text)
    return _path_source(text, text)


def _path_source(path_text: str, text: str) -> SourceSpec:
    path = Path(path_text).expanduser()
    if path.is_dir():
        return SourceSpec("images", str(path), text)
    if path.is_file():
        return SourceSpec("file", str(path), text)
    raise EdgeresError(f"source not found: '{text}' is not an existing file or folder; accepted: {ACCEPTED}")


# A stream's name: short, URL-safe (it is a path segment of the live view and a file name of --record DIR).
_NAMED = re.compile(r"^([A-Za-z][\w.-]{0,31})\s*=\s*(\S.*)$")


@dataclass(frozen=True)
class Stream:
    """One named source of a run: its name (in JSON lines, the summary, the live view and recordings) and spec."""

    name: str
    spec: SourceSpec

    def describe(self) -> str:
        return self.spec.describe()


def split_name(text: str) -> tuple[str | None, str]:
    """``NAME=SOURCE`` -> (NAME, SOURCE); a source without a name -> (None, source).

    A URL's query (``rtsp://host/x?a=b``), a path or a pipeline (``videotestsrc pattern=ball ! ...``) never
    reads as a name: a name is a single word of letters, digits, ``_ . -`` directly before the ``=``.
    """
    match = _NAMED.match(text.strip())
    return (match.group(1), match.group(2).strip()) if match else (None, text.strip())


def read_sources_file(path: Path) -> list[str]:
    """The sources listed in ``--sources FILE``: one per line (``SOURCE`` or ``NAME=SOURCE``); blank lines and
    lines starting with # are skipped.

    Raises:
        EdgeresError: the file is missing, unreadable or lists nothing.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgeresError(f"--sources file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeresError(f"cannot read --sources file {path}: {exc}") from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise EdgeresError(f"--sources file {path} lists no source (one per line: SOURCE or NAME=SOURCE)")
    return lines


def _identity(spec: SourceSpec) -> str:
    """What makes two sources the same device, file or URL (camera 0 is /dev/video0; paths resolved)."""
    if spec.kind == "camera":
        return spec.target if spec.target.startswith("/dev/") else f"/dev/video{spec.target}"
    if spec.kind in ("file", "images"):
        return str(Path(spec.target).resolve())
    if spec.kind == "stream":
        parts = urlsplit(spec.target)
        return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()
    return f"{spec.kind}:{spec.target}"


def plan_streams(texts: list[str]) -> list[Stream]:
    """Parse every source of a run and name it (``NAME=SOURCE``, else cam0, cam1, ... by position).

    Raises:
        EdgeresError: no source, a bad source, a name used twice, or the same camera, file or URL given twice
            (a second reader of one camera would only split its frames).
    """
    if not texts:
        raise EdgeresError(
            f"no source given; pass --source (repeat it for several) or --sources FILE; accepted: {ACCEPTED}"
        )
    streams: list[Stream] = []
    by_name: dict[str, Stream] = {}
    by_identity: dict[str, Stream] = {}
    for position, text in enumerate(texts):
        name, source = split_name(text)
        spec = parse_source(source)
        name = name or f"cam{position}"
        if name in by_name:
            raise EdgeresError(
                f"stream name '{name}' is used twice ({by_name[name].spec.text} and {spec.text}); names must be unique"
            )
        identity = _identity(spec)
        if identity in by_identity:
            first = by_identity[identity]
            raise EdgeresError(
                f"{spec.describe()} is given twice (streams '{first.name}' and '{name}'); give each source once"
            )
        stream = Stream(name, spec)
        by_name[name] = by_identity[identity] = stream
        streams.append(stream)
    return streams

"""Where results go: a window (when OpenCV has GUI support), a recording, JSON lines on stdout.

Each sink has ``write(record, image)`` and ``close()``; ``needs_image`` says whether the loop must draw
the annotated frame for it. All are called from the loop's result thread only.

Recordings: pip's OpenCV carries an FFmpeg without an H.264 encoder, so ``.mkv`` and ``.mp4`` get
MPEG-4 Part 2 ('mp4v') and ``.avi`` gets Motion JPEG; VLC, mpv, ffplay and most desktop players open
all three. Matroska is the default because a file cut short (power loss, SIGKILL) stays playable; Ctrl-C
and SIGTERM always finalize the file.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from edgeres.errors import EdgeresError, require
from edgeres.fileio import check_writable

RECORD_CODECS = {
    ".mkv": ("mp4v", "MPEG-4 Part 2 in Matroska"),
    ".mp4": ("mp4v", "MPEG-4 Part 2 in MP4"),
    ".avi": ("MJPG", "Motion JPEG in AVI"),
}


def gui_available() -> bool:
    """True when this OpenCV was built with a GUI backend and a display is reachable."""
    cv2 = require("cv2", "desktop")
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if match is None or match.group(1).upper() == "NONE":
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class JsonSink:
    """One JSON object per processed frame on a text stream (stdout by default), flushed per line."""

    needs_image = False

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stdout
        self.closed = False  # the reader went away (e.g. `| head`): the loop stops

    def write(self, record: dict, image: np.ndarray | None) -> None:
        if self.closed:
            return
        try:
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self.closed = True
            # Point stdout at /dev/null so Python's exit-time flush does not raise again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    def close(self) -> None:
        pass


class VideoRecorder:
    """The annotated frames as a video file, opened at the first frame (its size is the video's).

    A file is only created once there is a frame to write, so a run that fails before that leaves an
    existing file (``--force``) untouched.
    """

    needs_image = True

    def __init__(self, path: Path, fps: float = 30.0, force: bool = False):
        """Check the path now, before any work (``fps`` may be set later, before the first frame).

        Raises:
            EdgeresError: an unsupported extension, or the file exists without ``force``.
        """
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in RECORD_CODECS:
            raise EdgeresError(f"cannot record to '{self.path.name}': use a .mkv (recommended), .mp4 or .avi file")
        check_writable(self.path, force)
        if not self.path.parent.is_dir():
            raise EdgeresError(f"cannot record to {self.path}: folder {self.path.parent} does not exist")
        self.fourcc, self.format = RECORD_CODECS[ext]
        self.fps = float(fps)
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self._writer = None

    def write(self, record: dict, image: np.ndarray | None) -> None:
        cv2 = require("cv2", "desktop")
        if image is None:
            return
        if self._writer is None:
            h, w = image.shape[:2]
            self.size = (w - w % 2, h - h % 2)  # 4:2:0 chroma needs even sides
            self._writer = cv2.VideoWriter(
                str(self.path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self.size
            )
            if not self._writer.isOpened():
                self._writer = None
                raise EdgeresError(f"this OpenCV cannot write {self.format} to {self.path}")
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        """Finalize the container (index, duration): the file is complete and playable afterwards."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class Window:
    """An OpenCV window per stream (one stream: "edgeres camera"; several: "edgeres camera: NAME"); q or Esc
    asks the loop to stop."""

    needs_image = True
    NAME = "edgeres camera"

    def __init__(self, multi: bool = False):
        require("cv2", "desktop")
        if not gui_available():
            raise EdgeresError(
                "cannot open a window: this OpenCV has no GUI support or no display is set "
                "(opencv-python-headless); use --record FILE, --json, --serve or --headless"
            )
        self.multi = multi
        self.opened: list[str] = []
        self.closed = False

    def write(self, record: dict, image: np.ndarray | None) -> None:
        cv2 = require("cv2", "desktop")
        if image is None:
            return
        name = f"{self.NAME}: {record['stream']}" if self.multi else self.NAME
        if name not in self.opened:
            cv2.namedWindow(name, cv2.WINDOW_NORMAL)
            self.opened.append(name)
        cv2.imshow(name, image)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.closed = True

    def close(self) -> None:
        cv2 = require("cv2", "desktop")
        for name in self.opened:
            cv2.destroyWindow(name)

"""Where results go: a window (when OpenCV has GUI support), a recording, JSON lines on stdout.

Each sink has ``write(record, image)`` and ``close()``; ``needs_image`` says whether the loop must draw
the annotated frame for it. All are called from the loop's result thread only.

Recordings: pip's OpenCV carries an FFmpeg without an H.264 encoder, so ``.mkv`` and ``.mp4`` get
MPEG-4 Part 2 ('mp4v') and ``.avi`` gets Motion JPEG; VLC, mpv, ffplay and most desktop players open
all three. Matroska is the default because a file cut short (power loss, SIGKILL) stays playable; Ctrl-C
and SIGTERM always finalize the file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import tempfile
import time
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


class RecordingError(EdgeresError):
    """A recording that cannot be written (disk full, file size limit, read-only disk, no permission). The loop
    stops that recording and goes on with the other outputs; the run then exits non-zero."""


# Less free than two of FFmpeg's 32 KiB write buffers: the disk is full (the writes that failed are not reported).
MIN_FREE_BYTES = 64 << 10


def recording_failure(path: Path, code: int) -> RecordingError:
    """The one line for a recording to ``path`` that failed (or would fail) with errno ``code``."""
    import resource

    from edgeres.fileio import _mb, describe_disk

    folder = path.parent
    if code == errno.EROFS:
        return RecordingError(
            f"cannot record to {path}: {describe_disk(folder)} is mounted read-only; record to a writable disk"
        )
    if code in (errno.EACCES, errno.EPERM):
        return RecordingError(
            f"cannot record to {path}: permission denied in {folder}; record to a folder you can write"
        )
    if code == errno.EFBIG:
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        return RecordingError(
            f"recording to {path} stopped: the file size limit of this process ({_mb(limit)}, 'ulimit -f') was "
            "reached; the unfinished recording was removed (raise the limit, or record shorter runs)"
        )
    if code == errno.ENOENT:
        return RecordingError(f"recording to {path} stopped: its file was removed from {folder} while recording")
    return RecordingError(
        f"recording to {path} stopped: {describe_disk(folder, free=False)} is full; "
        "the unfinished recording was removed (free some space or record to another disk)"
    )


def _disk_fault(path: Path, written: Path | None) -> int | None:
    """The errno a recording into ``path``'s folder meets now, or None. OpenCV's writer does not report failed
    writes, so the loop looks at what they leave: the file stuck at the size limit, the disk full or read-only,
    the file gone."""
    import resource

    try:
        disk = os.statvfs(path.parent)
        size = os.stat(written).st_size if written is not None else 0
    except FileNotFoundError:
        return errno.ENOENT
    except OSError as exc:
        return exc.errno
    if disk.f_flag & os.ST_RDONLY:
        return errno.EROFS
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size >= limit:
        return errno.EFBIG
    if disk.f_bavail * disk.f_frsize < MIN_FREE_BYTES:
        return errno.ENOSPC
    return None


class VideoRecorder:
    """The annotated frames as a video file, opened at the first frame (its size is the video's).

    Atomic: frames go to a hidden file beside the recording (``.NAME.XXXXXXXX.part.EXT``), renamed to the
    recording's name once the container is finalized (end of the run, Ctrl-C, SIGTERM), so ``NAME`` is either
    absent or a complete video. A run that fails before its first frame leaves an existing file (``--force``)
    untouched. The folder is checked when the recorder is made (read-only, no permission, full); while
    recording, a full disk or the file size limit stops the recording with ``RecordingError`` and removes the
    unfinished file. ``kill -9`` or a power cut leaves the hidden part file (a Matroska part plays up to where it
    was cut).
    """

    needs_image = True
    CHECK_EVERY_S = 0.25  # how often the disk is looked at while recording

    def __init__(self, path: Path, fps: float = 30.0, force: bool = False):
        """Check the path now, before any work (``fps`` may be set later, before the first frame).

        Raises:
            EdgeresError: an unsupported extension, or the file exists without ``force``.
            RecordingError: the folder cannot take a recording (read-only, no permission, full).
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
        self.failed: str | None = None
        self.part: Path | None = None  # the hidden file being written
        self._writer = None
        self._checked_at = 0.0
        os.remove(self._new_part())  # the folder takes a file now, or the run is refused before any work
        self._fail_if(_disk_fault(self.path, None))

    def _new_part(self) -> Path:
        try:
            fd, name = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=f".part{self.path.suffix}", dir=self.path.parent
            )
        except OSError as exc:
            raise recording_failure(self.path, exc.errno) from None
        os.close(fd)
        os.chmod(name, 0o644)  # mkstemp makes 0600 files; a recording is an ordinary readable file
        return Path(name)

    def _fail_if(self, code: int | None) -> None:
        """Stop recording (the unfinished file removed) and raise, when the disk reported ``code``."""
        if code is None:
            return
        self._abandon()
        error = recording_failure(self.path, code)
        self.failed = str(error)
        raise error

    def _abandon(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.part is not None:
            self.part.unlink(missing_ok=True)
            self.part = None

    def write(self, record: dict, image: np.ndarray | None) -> None:
        cv2 = require("cv2", "desktop")
        if image is None or self.failed is not None:
            return
        if self._writer is None:
            h, w = image.shape[:2]
            self.size = (w - w % 2, h - h % 2)  # 4:2:0 chroma needs even sides
            self.part = self._new_part()
            self._writer = cv2.VideoWriter(
                str(self.part), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self.size
            )
            if not self._writer.isOpened():
                self._abandon()
                raise EdgeresError(f"this OpenCV cannot write {self.format} to {self.path}")
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1
        now = time.monotonic()
        if now - self._checked_at >= self.CHECK_EVERY_S:
            self._checked_at = now
            self._fail_if(_disk_fault(self.path, self.part))

    def close(self) -> None:
        """Finalize the container (index, duration) and rename it into place: the file is complete and playable
        afterwards. Idempotent.

        Raises:
            RecordingError: the finalized file did not fit (size limit, full disk); it was removed.
        """
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        self._fail_if(_disk_fault(self.path, self.part))
        os.replace(self.part, self.path)
        self.part = None


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

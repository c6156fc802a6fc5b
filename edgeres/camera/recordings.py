"""Recording many streams: one file per stream in a folder (``--record DIR``), or all streams tiled into one
video (``--record FILE --tile``). Both write through ``VideoRecorder`` (same containers and codecs).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgeres.camera.sinks import RECORD_CODECS, VideoRecorder, recording_failure
from edgeres.errors import EdgeresError, require


class StreamRecorders:
    """``DIR/NAME.mkv`` for every stream, each at its stream's frame rate.

    Every file is checked when this is built (before any work), so an existing recording is refused up front.
    """

    needs_image = True

    def __init__(self, folder: Path, names: list[str], force: bool = False, ext: str = ".mkv"):
        """Raises:
        EdgeresError: the folder is a file, or a stream's file exists without ``force``.
        """
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise EdgeresError(
                f"--record {self.folder}: not a folder; with several streams --record takes a folder "
                "(one file per stream) or a file with --tile"
            )
        if not self.folder.parent.is_dir():
            raise EdgeresError(f"cannot record to {self.folder}: folder {self.folder.parent} does not exist")
        try:
            self.folder.mkdir(exist_ok=True)
        except OSError as exc:  # a read-only disk, no permission: one line naming the folder and the disk
            raise recording_failure(self.folder, exc.errno) from None
        self.recorders = {name: VideoRecorder(self.folder / f"{name}{ext}", force=force) for name in names}

    def set_rates(self, per_stream: dict[str, float]) -> None:
        for name, fps in per_stream.items():
            self.recorders[name].fps = float(fps)

    def write(self, record: dict, image: np.ndarray | None) -> None:
        self.recorders[record["stream"]].write(record, image)

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.recorders.values())

    def close(self) -> None:
        failure = None
        for recorder in self.recorders.values():
            try:
                recorder.close()
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


def grid(count: int) -> tuple[int, int]:
    """(columns, rows) of the most square grid that holds ``count`` tiles."""
    cols = math.ceil(math.sqrt(count))
    return cols, math.ceil(count / cols)


class Tiler:
    """Every stream's newest annotated frame in one grid (the tiled recording and a tiled re-stream).

    The cell size is the first frame's (every stream is scaled into it); a stream without a frame yet is a black
    cell. Each cell is labelled with its stream's name.
    """

    def __init__(self, names: list[str]):
        self.names = list(names)
        self.latest: dict[str, np.ndarray] = {}
        self.cell: tuple[int, int] | None = None  # (w, h)
        self.dirty = False

    def add(self, record: dict, image: np.ndarray | None) -> None:
        if image is None:
            return
        if self.cell is None:
            w, h = image.shape[1], image.shape[0]
            self.cell = (w - w % 2, h - h % 2)  # 4:2:0 chroma needs even sides
        self.latest[record["stream"]] = image
        self.dirty = True

    def compose(self) -> np.ndarray:
        """The grid of the newest frames (BGR uint8)."""
        cv2 = require("cv2", "desktop")
        w, h = self.cell
        cols, rows = grid(len(self.names))
        canvas = np.zeros((rows * h, cols * w, 3), np.uint8)
        for n, name in enumerate(self.names):
            y, x = (n // cols) * h, (n % cols) * w
            image = self.latest.get(name)
            if image is not None:
                if (image.shape[1], image.shape[0]) != (w, h):
                    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
                canvas[y : y + h, x : x + w] = image
            scale = max(0.4, h / 720.0)
            cv2.putText(
                canvas,
                name,
                (x + 6, y + h - 8),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.7 * scale,
                (255, 255, 255),
                max(1, round(2 * scale)),
                cv2.LINE_AA,
            )
        self.dirty = False
        return canvas


class TiledRecorder:
    """All streams tiled (``Tiler``) into one video, one video frame per engine batch."""

    needs_image = True

    def __init__(self, path: Path, names: list[str], fps: float = 30.0, force: bool = False):
        """Raises:
        EdgeresError: see ``VideoRecorder``.
        """
        self.inner = VideoRecorder(path, fps=fps, force=force)
        self.tiler = Tiler(names)

    @property
    def path(self) -> Path:
        return self.inner.path

    @property
    def frames(self) -> int:
        return self.inner.frames

    @property
    def format(self) -> str:
        return self.inner.format

    @property
    def fps(self) -> float:
        return self.inner.fps

    @fps.setter
    def fps(self, value: float) -> None:
        self.inner.fps = float(value)

    def write(self, record: dict, image: np.ndarray | None) -> None:
        self.tiler.add(record, image)

    def end_batch(self) -> None:
        if self.tiler.dirty:
            self.inner.write({}, self.tiler.compose())

    def close(self) -> None:
        self.inner.close()


def recording_sink(path: Path, names: list[str], tile: bool, force: bool):
    """The recording for ``--record PATH`` (``--tile``) and the run's streams; checked now, before any work.

    One stream: PATH is a file (as always). Several: PATH is a folder (one file per stream), or, with
    ``--tile``, a file holding all of them in a grid.

    Raises:
        EdgeresError: a file for several streams without ``--tile``, ``--tile`` with a folder, an existing file
            without ``--force``, an unsupported container.
    """
    path = Path(path)
    is_file = path.suffix.lower() in RECORD_CODECS
    if tile:
        if not is_file:
            raise EdgeresError(
                f"--tile records all streams into one file; --record {path} is not a .mkv, .mp4 or .avi file"
            )
        return TiledRecorder(path, names, force=force)
    if len(names) == 1:
        return VideoRecorder(path, force=force)
    if is_file:
        raise EdgeresError(
            f"--record {path} is one file for {len(names)} streams; pass a folder (one file per "
            "stream) or add --tile (all streams in one grid)"
        )
    return StreamRecorders(path, names, force=force)

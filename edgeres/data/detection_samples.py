"""Detection data in memory: a ``DetectionSample`` per image, a ``DetectionSet`` per split, and the box checks.

Both loaders (``edgeres.data.coco``, ``edgeres.data.yolo``) produce this one form and judge every box
with ``check_box`` and collect every problem in a ``Problems`` list, so a box is treated the same
whichever file format it came from, and a bad split is reported in full, once, before training.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeres.errors import DataError

# Coordinates beyond the image by less than this (pixels) are clamped without counting the box as
# clipped: normalized YOLO labels written with 6 decimals land a hair outside the image edge.
CLIP_TOLERANCE = 0.01
MIN_BOX_SIDE = 1.0  # pixels; a box thinner than this after clipping is degenerate: no object fits in it
MAX_LISTED = 20  # problems listed in one error message; the rest are counted


@dataclass(frozen=True, eq=False)
class DetectionSample:
    """One image and its objects.

    ``boxes`` and ``labels`` are stored as read-only arrays: the samples of a set are shared by every
    epoch, so an augmentation must build new arrays rather than edit these in place. ``eq=False``:
    samples compare by identity (comparing arrays with ``==`` has no single truth value).

    Attributes:
        path: the image file.
        width: image width in pixels (after EXIF orientation, as OpenCV decodes it).
        height: image height in pixels.
        boxes: (n, 4) float32 x0, y0, x1, y1 in image pixels, already clipped to the image.
        labels: (n,) int64 contiguous class indices into ``DetectionSet.class_names``.
        image_id: stable id: the COCO image id, or the image's index for YOLO.
        clipped: how many of ``boxes`` were clipped to the image when loaded.
        crowd_skipped: COCO ``iscrowd`` annotations of this image left out of ``boxes``.
        no_label_file: YOLO image without a label file (read as an image with no objects).
    """

    path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    image_id: int
    clipped: int = 0
    crowd_skipped: int = 0
    no_label_file: bool = False

    def __post_init__(self) -> None:
        boxes = np.array(self.boxes, dtype=np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        labels = np.array(self.labels, dtype=np.int64).reshape(-1)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{self.path}: boxes must be (n, 4) x0, y0, x1, y1, got shape {boxes.shape}")
        if len(boxes) != len(labels):
            raise ValueError(f"{self.path}: {len(boxes)} boxes but {len(labels)} labels")
        boxes.setflags(write=False)
        labels.setflags(write=False)
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)


@dataclass
class DetectionSet:
    """The images of one split with their boxes, the class names the labels index, and load-time counts.

    Attributes:
        samples: one ``DetectionSample`` per image, in file order.
        class_names: names of the classes; ``labels`` index this list.
        source: "coco" or "yolo".
        summary: counts from ``summarize``: images, boxes, boxes_clipped, images_without_objects,
            images_without_label_file, crowd_skipped, per_class (class name -> boxes).
    """

    samples: list[DetectionSample]
    class_names: list[str]
    source: str
    summary: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.summary:
            self.summary = summarize(self.samples, self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, idx: Iterable[int]) -> DetectionSet:
        """The samples at ``idx`` (ints, an integer array or a boolean mask), with the summary counted again."""
        idx = np.asarray(idx if isinstance(idx, np.ndarray) else list(idx))
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        samples = [self.samples[int(i)] for i in idx.reshape(-1)]
        return DetectionSet(samples, list(self.class_names), self.source, summarize(samples, self.class_names))


def summarize(samples: Sequence[DetectionSample], class_names: Sequence[str]) -> dict:
    """Counts that describe a split; printed before training and saved beside a trained model.

    Args:
        samples: the split's samples.
        class_names: names the labels index.

    Returns:
        images, boxes, boxes_clipped, images_without_objects, images_without_label_file,
        crowd_skipped, and per_class: {class name: number of boxes}.
    """
    counts = np.zeros(len(class_names), dtype=np.int64)
    for s in samples:
        if s.labels.size:
            counts += np.bincount(s.labels, minlength=len(class_names))[: len(class_names)]
    return {
        "images": len(samples),
        "boxes": int(sum(len(s.labels) for s in samples)),
        "boxes_clipped": int(sum(s.clipped for s in samples)),
        "images_without_objects": int(sum(1 for s in samples if len(s.labels) == 0)),
        "images_without_label_file": int(sum(1 for s in samples if s.no_label_file)),
        "crowd_skipped": int(sum(s.crowd_skipped for s in samples)),
        "per_class": {name: int(n) for name, n in zip(class_names, counts, strict=True)},
    }


def check_box(
    box_xyxy: Sequence[float], width: int, height: int
) -> tuple[tuple[float, float, float, float] | None, bool, str | None]:
    """Judge one box against its image: keep it, clip it, or name what is wrong with it.

    Args:
        box_xyxy: x0, y0, x1, y1 in image pixels.
        width: image width in pixels.
        height: image height in pixels.

    Returns:
        (box, clipped, problem): the box clipped to the image and whether clipping moved it by more
        than ``CLIP_TOLERANCE``; or (None, False, problem) where problem says "non-finite",
        "degenerate" or "entirely outside", for a box that cannot be used.
    """
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return None, False, "has a non-finite coordinate"
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return None, False, f"is degenerate: {_px(x1 - x0)} x {_px(y1 - y0)} px"
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        return None, False, f"is entirely outside the {width}x{height} image"
    clipped = (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))
    moved = max(abs(a - b) for a, b in zip(clipped, (x0, y0, x1, y1), strict=True)) > CLIP_TOLERANCE
    w, h = clipped[2] - clipped[0], clipped[3] - clipped[1]
    if w < MIN_BOX_SIDE or h < MIN_BOX_SIDE:
        after = " after clipping to the image" if moved else ""
        return None, False, f"is degenerate: {_px(w)} x {_px(h)} px{after} (at least {MIN_BOX_SIDE:g} px each)"
    return clipped, moved, None


def _px(v: float) -> str:
    return f"{v:.3g}"


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file from its header alone (the pixels are not decoded).

    A JPEG whose EXIF orientation turns it sideways reports the turned size, as OpenCV decodes it.

    Raises:
        OSError: the file is missing or is not an image Pillow can identify (callers report it).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
            # Only JPEG keeps EXIF in the header; asking a PNG for EXIF decodes the whole image.
            if im.format in ("JPEG", "MPO") and im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                width, height = height, width
    except UnidentifiedImageError:
        raise OSError("not an image file Pillow can identify") from None
    return int(width), int(height)


class Problems:
    """Everything wrong with one split, collected so the user sees it all in one report.

    Args:
        where: the split's folder (or file), named in the first line.
        what: the layout read, e.g. "COCO annotations.json" or "YOLO images/ + labels/".
    """

    def __init__(self, where: Path, what: str) -> None:
        self.where = Path(where)
        self.what = what
        self.lines: list[str] = []

    def __len__(self) -> int:
        return len(self.lines)

    def add(self, file: str, problem: str) -> None:
        """Record one problem about ``file`` (a name relative to the split folder, plus id or line)."""
        self.lines.append(f"{file}: {problem}")

    def message(self, limit: int = MAX_LISTED) -> str:
        """The report: a count line naming the split, then one line per problem (at most ``limit``)."""
        n = len(self.lines)
        head = f"{n} problem{'s' if n != 1 else ''} in {self.where} ({self.what}):"
        body = [f"  {line}" for line in self.lines[:limit]]
        if n > limit:
            body.append(f"  ... and {n - limit} more")
        return "\n".join([head, *body])

    def raise_if_any(self) -> None:
        """Raise one DataError listing every problem, if there are any."""
        if self.lines:
            raise DataError(self.message())

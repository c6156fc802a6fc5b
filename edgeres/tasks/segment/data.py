"""Segmentation data for training and evaluation: an augmented torch Dataset of (image, mask) and a resized EvalSet.

Images are stretched to network size like every edgeres input; training masks follow with nearest-neighbour
resizing (a class index must stay a class index). Evaluation scores the prediction at each image's original
size against its original mask, so the number is the one a user of the full-size class map sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgeres.config import PreprocessConfig
from edgeres.data.augment import color_jitter
from edgeres.errors import require
from edgeres.tasks.base import TrainingData
from edgeres.tasks.segment.classes import IGNORE
from edgeres.tasks.segment.masks import MaskSet

CACHE_LIMIT_BYTES = 1 << 30  # decoded network-size images kept in memory below this size
SIZE_PROBE_IMAGES = 200  # headers read to find the data's own image size


def _resize_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    cv2 = require("cv2", "desktop")
    if mask.shape == tuple(hw):
        return mask
    return cv2.resize(mask, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)


class SegmentTrainImages:
    """A torch Dataset of ``(x, mask)``: x normalized float CHW at network size, mask int64 with 255 = ignore.

    Augmentation: a random zoom and shift (image linear, mask nearest, the uncovered border grey and ignored),
    brightness/contrast/per-channel gain, and a horizontal flip only when asked (digits and text are not
    mirror-symmetric)."""

    def __init__(self, masks: MaskSet, cfg: PreprocessConfig, augment: bool = True, hflip: bool = False, seed: int = 0):
        self.masks = masks
        self.cfg = cfg
        self.augment = augment
        self.hflip = hflip
        self.seed = seed
        self.epoch = 0
        h, w = cfg.input_size
        self._cache = None
        if len(masks) * h * w * 4 <= CACHE_LIMIT_BYTES:
            self._cache = [self._load(i) for i in range(len(masks))]

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        from edgeres.processing import read_image, resize_uint8

        img = read_image(self.masks.samples[i].image)
        rgb = np.ascontiguousarray(resize_uint8(img, self.cfg)[..., ::-1])
        return rgb, _resize_mask(self.masks.read_mask(i), self.cfg.input_size)

    def __len__(self) -> int:
        return len(self.masks)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int):
        import torch

        img, mask = self._cache[i] if self._cache is not None else self._load(i)
        if self.augment:
            # torch.initial_seed() differs per epoch inside DataLoader workers (set_epoch does not reach them).
            rng = np.random.default_rng([self.seed, self.epoch, i, torch.initial_seed() % 2**32])
            img, mask = random_affine(img, mask, rng)
            img = color_jitter(img, rng)
            if self.hflip and rng.random() < 0.5:
                img, mask = img[:, ::-1], mask[:, ::-1]
        mean = np.asarray(self.cfg.mean, np.float32) * 255.0
        std = np.asarray(self.cfg.std, np.float32) * 255.0
        x = ((img.astype(np.float32) - mean) / std).transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(mask, np.int64))


def random_affine(
    img: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.75, 1.25),
    translate: float = 0.15,
) -> tuple[np.ndarray, np.ndarray]:
    """Zoom and shift an image and its mask together; pixels from outside the image are grey and ignored."""
    cv2 = require("cv2", "desktop")
    h, w = img.shape[:2]
    s = float(rng.uniform(*scale))
    tx = (1 - s) * w / 2 + float(rng.uniform(-translate, translate)) * w
    ty = (1 - s) * h / 2 + float(rng.uniform(-translate, translate)) * h
    matrix = np.array([[s, 0, tx], [0, s, ty]], dtype=np.float32)
    out = cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(114, 114, 114))
    moved = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=IGNORE)
    return out, moved


class SegmentEvalImages:
    """A split resized once to network size and served in batches with each original size; ``mask(i)`` reads the
    original-size mask of image i when the scorer needs it."""

    def __init__(self, masks: MaskSet, cfg: PreprocessConfig):
        from edgeres.processing import read_image, resize_uint8

        self.masks = masks
        self.cfg = cfg
        self.image_hws = [(s.height, s.width) for s in masks.samples]
        h, w = cfg.input_size
        self._cache = None
        if len(masks) * h * w * 3 <= CACHE_LIMIT_BYTES:
            resized = [resize_uint8(read_image(s.image), cfg) for s in masks.samples]
            self._cache = np.stack(resized) if resized else np.zeros((0, h, w, 3), np.uint8)

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def class_names(self) -> list[str]:
        return self.masks.class_names

    def mask(self, i: int) -> np.ndarray:
        return self.masks.read_mask(i)

    def eval_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, list[tuple[int, int]]]]:
        from edgeres.processing import finish_batch, preprocess, read_image

        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            if self._cache is not None:
                x = finish_batch(self._cache[start:stop], self.cfg)
            else:
                x = preprocess([read_image(s.image) for s in self.masks.samples[start:stop]], self.cfg)
            yield x, self.image_hws[start:stop]


def load_training_data(cfg, pre: PreprocessConfig, with_val: bool = True) -> TrainingData:
    """Both splits, every data problem reported in one message before training starts."""
    from edgeres.tasks.segment.layouts import load_splits

    train, val = load_splits(Path(cfg.data))
    return TrainingData(
        class_names=train.class_names,
        train=SegmentTrainImages(train, pre, augment=True, hflip=cfg.hflip, seed=cfg.seed),
        val=SegmentEvalImages(val, pre) if with_val else None,
        summary={
            "train_images": len(train),
            "val_images": len(val),
            "layout": train.source,
            "classes_from": train.classes.source,
            "train_pixels": train.summary,
        },
    )


def load_eval_split(path: Path) -> MaskSet:
    """The split to evaluate on (VOC's val list, ``path/val``, or ``path``); its masks are checked here, so a bad
    mask is reported in full before any inference."""
    from edgeres.tasks.segment.layouts import load_eval_split as load

    return load(Path(path))


def default_img_size(data: Path) -> int | None:
    """The training images' size when every one is square, of one size and a multiple of 32 (digit-masks: 128);
    else None (224)."""
    from edgeres.data.detection_samples import image_size

    root = Path(data)
    folders = [root / "train" / "images", root / "JPEGImages", root / "images", root / "train"]
    sizes = set()
    for folder in folders:
        if folder.is_dir():
            from edgeres.processing import IMAGE_EXTENSIONS

            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[:SIZE_PROBE_IMAGES]
            for path in files:
                try:
                    sizes.add(image_size(path))
                except OSError:  # training loads the data again and reports every problem in full
                    return None
            break
    if len(sizes) != 1:
        return None
    w, h = sizes.pop()
    return w if w == h and w % 32 == 0 and w >= 64 else None


MASK_FOLDERS = ("masks", "SegmentationClass", "SegmentationObject", "SegmentationClassAug", "labels")


def input_images(folder: Path, images: list[Path]) -> list[Path]:
    """The network inputs among a segmentation folder's image files: not the masks (files under a ``masks/``,
    ``labels/`` or VOC ``Segmentation*`` folder), so ``calibrate --data DIR/train`` sees images only."""
    root = Path(folder)
    return [p for p in images if not any(part in MASK_FOLDERS for part in p.relative_to(root).parts[:-1])]

"""Classification data: ImageFolder splits as an augmented torch Dataset (training) and a resized EvalSet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgeres.config import PreprocessConfig
from edgeres.data.imagefolder import ImageList
from edgeres.errors import require
from edgeres.processing import preprocess, resize_uint8
from edgeres.tasks.base import TrainingData

CACHE_LIMIT_BYTES = 1 << 30  # resized uint8 images kept in memory below this size


class TrainImages:
    """A torch Dataset over an ImageList with standard augmentation; images decoded once and cached."""

    def __init__(self, images: ImageList, cfg: PreprocessConfig, hflip: bool = False):
        torch = require("torch", "desktop")
        v2 = require("torchvision.transforms.v2", "desktop")
        self.labels = images.labels
        # Decoded RGB uint8 CHW tensors; the bundled sets are small. For big folders decode lazily.
        self._paths = images.paths
        self._cache: list | None = None
        if len(images) <= 50_000:
            self._cache = [self._to_tensor(img) for img in images.load_images()]
        size = cfg.input_size
        steps = [
            v2.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.8, 1.25), antialias=True),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
        ]
        if hflip:
            steps.append(v2.RandomHorizontalFlip())
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(cfg.mean), list(cfg.std))]
        self.transform = v2.Compose(steps)

    @staticmethod
    def _to_tensor(bgr: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from edgeres.processing import read_image

        img = self._cache[i] if self._cache is not None else self._to_tensor(read_image(self._paths[i]))
        return self.transform(img), int(self.labels[i])


class EvalImages:
    """An image list resized once to network size (kept in memory when small) and served in batches."""

    def __init__(self, images: ImageList, cfg: PreprocessConfig):
        self.images = images
        self.cfg = cfg
        self.class_names = list(images.class_names)
        h, w = cfg.input_size
        self._cache = None
        self._hws: list[tuple[int, int]] | None = None
        if len(images) * h * w * 3 <= CACHE_LIMIT_BYTES:
            self._cache = np.stack([resize_uint8(img, cfg) for img in images.load_images()])

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> np.ndarray:
        return self.images.labels

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Float32 NCHW batches in order."""
        from edgeres.processing import finish_batch, read_image

        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            if self._cache is not None:
                yield finish_batch(self._cache[start:stop], self.cfg)
            else:
                yield preprocess([read_image(p) for p in self.images.paths[start:stop]], self.cfg)

    def eval_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, list[tuple[int, int]]]]:
        """Batches with each image's size; a classifier's decoding does not use the sizes (all network size)."""
        for x in self.batches(batch_size):
            yield x, [self.cfg.input_size] * len(x)


def load_training_data(cfg, pre: PreprocessConfig, with_val: bool = True) -> TrainingData:
    """``cfg.data``'s train and val ImageFolder splits (or a seeded ``cfg.val_split`` hold-out)."""
    from edgeres.data.imagefolder import load_splits

    train_list, val_list = load_splits(cfg.data, cfg.val_split, cfg.seed)
    return TrainingData(
        class_names=list(train_list.class_names),
        train=TrainImages(train_list, pre, hflip=cfg.hflip),
        val=EvalImages(val_list, pre) if with_val else None,
        summary={"train_images": len(train_list), "val_images": len(val_list)},
    )


def load_eval_split(path: Path) -> ImageList:
    """``path/val/<class>/...`` or ``path/<class>/...``: the files, listed (nothing decoded yet)."""
    from edgeres.data.imagefolder import load_eval_split as load_folder

    return load_folder(Path(path))


def default_img_size(data: Path) -> int | None:
    """None: classifiers keep 224 (ImageNet's size; the first conv layers' receptive fields assume it)."""
    return None

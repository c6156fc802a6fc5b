"""Detection data: COCO or YOLO splits as an augmented torch Dataset of CenterNet targets, and a resized EvalSet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgeres.config import PreprocessConfig
from edgeres.data.augment import color_jitter
from edgeres.errors import EdgeresError, require
from edgeres.tasks.base import TrainingData

MIN_VISIBLE = 0.5  # an augmented box keeps its label when at least half of it stays in the image


class DetectionTrainImages:
    """A torch Dataset of detection samples: decoded once at network size, augmented, encoded as targets."""

    def __init__(self, dataset, cfg: PreprocessConfig, augment: bool = True, seed: int = 0):
        from edgeres.processing import read_image, resize_uint8

        self.cfg = cfg
        self.num_classes = len(dataset.class_names)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        h, w = cfg.input_size
        self.images, self.boxes, self.labels = [], [], []
        for sample in dataset.samples:
            img = read_image(sample.path)
            sy, sx = h / img.shape[0], w / img.shape[1]
            self.images.append(np.ascontiguousarray(resize_uint8(img, cfg)[..., ::-1]))  # RGB, network size
            self.boxes.append(sample.boxes.astype(np.float32) * np.array([sx, sy, sx, sy], np.float32))
            self.labels.append(sample.labels.astype(np.int64))
        self.output_hw = (h // 4, w // 4)

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int):
        import torch

        from edgeres.tasks.detect.targets import encode_centernet

        img, boxes, labels = self.images[i], self.boxes[i], self.labels[i]
        if self.augment:
            # torch.initial_seed() differs per epoch inside DataLoader workers (set_epoch does not reach them).
            rng = np.random.default_rng([self.seed, self.epoch, i, torch.initial_seed() % 2**32])
            img, boxes, labels = random_affine(img, boxes, labels, rng)
            img = color_jitter(img, rng)
        mean = np.asarray(self.cfg.mean, np.float32) * 255.0
        std = np.asarray(self.cfg.std, np.float32) * 255.0
        x = ((img.astype(np.float32) - mean) / std).transpose(2, 0, 1)
        t = encode_centernet(boxes, labels, self.num_classes, self.cfg.input_size, self.output_hw)
        return (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(t["heatmap"]),
                torch.from_numpy(t["size"]), torch.from_numpy(t["offset"]), torch.from_numpy(t["mask"]))


def random_affine(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  scale: tuple[float, float] = (0.75, 1.25), translate: float = 0.15):
    """Zoom and shift an image with its boxes; boxes less than half visible afterwards are dropped."""
    cv2 = require("cv2", "desktop")
    h, w = img.shape[:2]
    s = float(rng.uniform(*scale))
    tx = (1 - s) * w / 2 + float(rng.uniform(-translate, translate)) * w
    ty = (1 - s) * h / 2 + float(rng.uniform(-translate, translate)) * h
    matrix = np.array([[s, 0, tx], [0, s, ty]], dtype=np.float32)
    out = cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(114, 114, 114))
    if len(boxes) == 0:
        return out, boxes, labels
    moved = boxes * s + np.array([tx, ty, tx, ty], np.float32)
    clipped = np.clip(moved, 0, [w, h, w, h]).astype(np.float32)
    area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
    kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    wide, tall = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (kept_area >= MIN_VISIBLE * area) & (wide >= 2) & (tall >= 2)
    return out, clipped[keep], labels[keep]


class DetectionImages:
    """A detection split resized once to network size and served in batches, with each original size."""

    def __init__(self, dataset, cfg: PreprocessConfig):
        from edgeres.processing import read_image, resize_uint8

        self.dataset = dataset
        self.cfg = cfg
        self.image_hws: list[tuple[int, int]] = []
        resized = []
        for sample in dataset.samples:
            img = read_image(sample.path)
            self.image_hws.append(img.shape[:2])
            resized.append(resize_uint8(img, cfg))
        h, w = cfg.input_size
        self._cache = np.stack(resized) if resized else np.zeros((0, h, w, 3), np.uint8)

    def __len__(self) -> int:
        return len(self.image_hws)

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset.class_names)

    def eval_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, list[tuple[int, int]]]]:
        """(network input batch, original (h, w) of each image) in order."""
        from edgeres.processing import finish_batch

        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            yield finish_batch(self._cache[start:stop], self.cfg), self.image_hws[start:stop]


def load_splits(data: Path) -> tuple:
    """The train and val splits of a folder with train/ and val/ (COCO or YOLO each), naming the same classes."""
    from edgeres.data.detection import load_detection_splits

    train_set, val_set = load_detection_splits(Path(data))
    if train_set.class_names != val_set.class_names:
        raise EdgeresError(f"{data}: train and val name different classes "
                           f"({train_set.class_names[:6]} vs {val_set.class_names[:6]})")
    if len(train_set) == 0 or len(val_set) == 0:
        raise EdgeresError(f"{data} needs images in both train/ and val/")
    return train_set, val_set


def load_training_data(cfg, pre: PreprocessConfig, with_val: bool = True) -> TrainingData:
    """Every data problem (boxes outside images, unknown categories, missing files) is reported before training."""
    train_set, val_set = load_splits(cfg.data)
    return TrainingData(
        class_names=list(train_set.class_names),
        train=DetectionTrainImages(train_set, pre, augment=True, seed=cfg.seed),
        val=DetectionImages(val_set, pre) if with_val else None,
        summary={"train_images": len(train_set), "val_images": len(val_set),
                 "train_boxes": int(train_set.summary.get("boxes", 0))},
    )


def load_eval_split(path: Path):
    """A detection split to evaluate on: ``path`` itself, or its ``val/`` when it holds train/ and val/."""
    from edgeres.data.detection import load_detection_split

    path = Path(path)
    if (path / "val").is_dir():
        path = path / "val"
    return load_detection_split(path)


def default_img_size(data: Path) -> int | None:
    """The training images' size when every one is square and of one size, a multiple of 32 (digit-scenes:
    128); else None (224)."""
    from edgeres.data.detection import load_detection_split

    root = Path(data)
    split = root / "train" if (root / "train").is_dir() else root
    try:
        samples = load_detection_split(split).samples
    except Exception:  # training loads the data again and reports every problem in full
        return None
    sizes = {(int(s.width), int(s.height)) for s in samples}
    if len(sizes) != 1:
        return None
    w, h = sizes.pop()
    return w if w == h and w % 32 == 0 and w >= 64 else None

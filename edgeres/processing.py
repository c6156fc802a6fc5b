"""Pre- and post-processing in plain numpy/OpenCV, shared by every backend and the camera loop.

Frames are resized as uint8 first (cheap on a Jetson's ARM cores), then normalized at network size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeres.config import PreprocessConfig
from edgeres.errors import DataError, require

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

_INTERPOLATION = {"linear": 1, "area": 3, "nearest": 0, "cubic": 2}  # cv2.INTER_* values


def read_image(path: Path) -> np.ndarray:
    """Decode an image file as a 3-channel BGR uint8 array (grayscale and RGBA are converted).

    Raises:
        DataError: the file is missing or cannot be decoded as an image.
    """
    cv2 = require("cv2", "desktop")
    path = Path(path)
    try:
        raw = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc.strerror}") from None
    img = _decode(cv2, raw) if raw.size else None
    if img is None:
        raise DataError(f"cannot decode {path} as an image; accepted: {', '.join(IMAGE_EXTENSIONS)}")
    return img


def _decode(cv2, raw: np.ndarray):
    """cv2.imdecode with OpenCV's own log lines ("[ WARN] ... PNG input buffer is incomplete") silenced:
    a failure is reported once, by the caller, as a DataError."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:
        return cv2.imdecode(raw, cv2.IMREAD_COLOR)
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(raw, cv2.IMREAD_COLOR)
    finally:
        log.setLogLevel(level)


def resize_uint8(img: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Resize a uint8 HxWx3 image to the network's input size."""
    cv2 = require("cv2", "desktop")
    h, w = cfg.input_size
    if img.shape[:2] == (h, w):
        return img
    return cv2.resize(img, (w, h), interpolation=_INTERPOLATION[cfg.interpolation])


def normalize(batch_hwc: np.ndarray, cfg: PreprocessConfig, bgr_input: bool = True) -> np.ndarray:
    """uint8 NHWC (BGR from OpenCV by default) -> float32 NCHW normalized with the config's mean/std."""
    if bgr_input and cfg.channel_order == "RGB":
        batch_hwc = batch_hwc[..., ::-1]
    mean = np.asarray(cfg.mean, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(cfg.std, dtype=np.float32) * 255.0)
    x = (batch_hwc.astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess(images: list[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    """BGR uint8 images of any size -> one network input batch.

    Float32 NCHW normalized with mean/std, or, when the network normalizes itself
    (``cfg.normalize_in_network``), uint8 NHWC in the config's channel order.
    """
    resized = np.stack([resize_uint8(img, cfg) for img in images])
    return finish_batch(resized, cfg)


def finish_batch(resized_bgr: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 BGR NHWC at network size -> the network's input (see ``preprocess``)."""
    if cfg.normalize_in_network:
        rgb = resized_bgr[..., ::-1] if cfg.channel_order == "RGB" else resized_bgr
        return np.ascontiguousarray(rgb)
    return normalize(resized_bgr, cfg)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def topk(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest entries per row, largest first (ties: lower index first)."""
    k = min(k, probs.shape[-1])
    idx = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    return idx, np.take_along_axis(probs, idx, axis=-1)

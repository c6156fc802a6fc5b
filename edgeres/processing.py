"""Image reading and pre-processing in plain numpy/OpenCV, shared by every backend, task and the camera loop.

Frames are resized as uint8 first (cheap on a Jetson's ARM cores), then normalized at network size.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
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
    size = declared_image_size(raw[: 1 << 16].tobytes())
    if size is not None and size[0] * size[1] > max_image_pixels():
        raise DataError(
            f"{path} declares a {size[0]}x{size[1]} image ({size[0] * size[1] / 1e6:.0f} megapixels), more than "
            f"edgeres decodes ({max_image_pixels() / 1e6:.0f} megapixels; a decompression bomb or a broken "
            f"header); raise {MAX_PIXELS_ENV} to read larger images"
        )
    failure = None
    with _codec_messages() as said:
        try:
            img = _decode(cv2, raw) if raw.size else None
        except cv2.error as exc:  # OpenCV's own size limit and codec assertions
            failure = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else "decoder error"
            img = None
        said.keep = img is not None  # a failure's codec line becomes part of the one error line below
    if img is None:
        found = failure or (said.text.strip().splitlines()[0].strip() if said.text.strip() else "")
        found = f" ({found[:160]})" if found else ""
        raise DataError(f"cannot decode {path} as an image{found}; accepted: {', '.join(IMAGE_EXTENSIONS)}")
    return img


class _Said:
    text = ""
    keep = True  # write what the codec printed back to stderr (a warning on an image that did decode)


@contextlib.contextmanager
def _codec_messages():
    """Capture what libpng/libjpeg print straight to file descriptor 2 ("libpng error: Not enough image data")
    while one image decodes: a failed decode reports it inside its one error line instead of a second line."""
    said = _Said()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters): nothing to capture
        yield said
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said.text = sink.read(1 << 16).decode(errors="replace")
            if said.keep and said.text:
                sys.stderr.write(said.text)


MAX_PIXELS_ENV = "EDGERES_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000  # a 12000x8000 photo; decoding allocates 3 bytes per pixel


def max_image_pixels() -> int:
    """The largest image (width x height) ``read_image`` decodes: ``$EDGERES_MAX_IMAGE_PIXELS`` or 100 million."""
    import os

    try:
        return int(os.environ.get(MAX_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS))
    except ValueError:
        return DEFAULT_MAX_IMAGE_PIXELS


def declared_image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, BMP or WebP header, read before anything is decoded (a 2 MB PNG can
    declare 50000x50000 pixels: 7.5 GB once decoded). None for other formats or headers too short to say."""
    import struct

    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(w), abs(h)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and head[12:16] == b"VP8X" and len(head) >= 30:
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Walk the JPEG marker segments up to the first start-of-frame (SOF0..SOF15 but DHT, JPG, DAC)."""
    i = 2
    while i + 9 < len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = int.from_bytes(head[i + 5 : i + 7], "big"), int.from_bytes(head[i + 7 : i + 9], "big")
            return w, h
        i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


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

"""Compositing digits onto real photos: backgrounds, crops, alpha pasting with tight boxes, clutter images.

Everything takes an explicit ``numpy.random.Generator`` so a scene is a pure function of its seed;
the detection set builds multi-digit scenes from ``random_crop`` + ``paste_digit`` the same way
``clutter_image`` builds one-digit ones. Resizing uses Pillow (a dependency of scikit-image), so
this module does not need OpenCV.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from PIL import Image

from edgeres.errors import DataError

# Real photos that ship inside scikit-image (no download). Left out on purpose: "page" and "text"
# (printed glyphs, some of them digits) and the synthetic or nearly flat images (logo, colorwheel,
# checkerboard, horse, phantom, clock).
BACKGROUND_NAMES: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle",
    "camera",
    "brick",
    "grass",
    "gravel",
    "coins",
    "moon",
    "cell",
)

# Rec. 601 luma weights: how bright a colour looks, used to keep digits visible on their background.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _load_photo(name: str) -> np.ndarray:
    from skimage import data

    image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)


@functools.cache
def _cached_photo(name: str) -> np.ndarray:
    image = _load_photo(name)
    image.setflags(write=False)  # shared between callers: crops are copies, the photo never changes
    return image


def load_backgrounds(names: Sequence[str] = BACKGROUND_NAMES) -> list[np.ndarray]:
    """Load real photos bundled with scikit-image as RGB uint8 arrays.

    Args:
        names: which photos, from ``BACKGROUND_NAMES``. Grayscale photos come back as 3 equal channels.

    Returns:
        One read-only (H, W, 3) uint8 array per name, in the order given.
    """
    unknown = [n for n in names if n not in BACKGROUND_NAMES]
    if unknown:
        raise DataError(f"unknown background photo(s) {unknown}; available: {', '.join(BACKGROUND_NAMES)}")
    if not names:
        raise DataError(f"no background photos asked for; available: {', '.join(BACKGROUND_NAMES)}")
    return [_cached_photo(n) for n in names]


def resize(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a uint8 image (antialiased when shrinking).

    Args:
        image: (H, W) or (H, W, 3) uint8.
        size_wh: output (width, height).

    Returns:
        A new uint8 array (a copy even when the size already matches).
    """
    if (image.shape[1], image.shape[0]) == tuple(size_wh):
        return np.array(image)
    return np.array(Image.fromarray(image).resize(size_wh, Image.Resampling.BILINEAR))


def random_crop(
    photo: np.ndarray,
    size_hw: tuple[int, int],
    rng: np.random.Generator,
    zoom: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """Cut a random window out of a photo and return it at ``size_hw``.

    Args:
        photo: (H, W, 3) or (H, W) uint8 image.
        size_hw: output (height, width).
        rng: source of randomness.
        zoom: the window is ``size_hw`` times a factor drawn uniformly from this range, then resized
            to ``size_hw``; factors above 1 show more of the scene (objects rather than flat texture).
            The factor is lowered when the window would not fit, and a photo smaller than ``size_hw``
            is enlarged.

    Returns:
        A new uint8 array of shape ``size_hw`` (+ the photo's channels).
    """
    h, w = (int(v) for v in size_hw)
    if h <= 0 or w <= 0:
        raise ValueError(f"crop size must be positive, got {size_hw}")
    ph, pw = photo.shape[:2]
    factor = min(float(rng.uniform(*zoom)), ph / h, pw / w)
    ch, cw = max(1, min(ph, round(h * factor))), max(1, min(pw, round(w * factor)))
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    return resize(np.ascontiguousarray(photo[y0 : y0 + ch, x0 : x0 + cw]), (w, h))


def trim_digit(digit: np.ndarray) -> np.ndarray:
    """Crop a grayscale digit to the bounding box of its non-zero (stroke) pixels.

    Args:
        digit: (H, W) uint8 digit, bright stroke on black as in MNIST.

    Returns:
        The cropped view; the input unchanged if it has no stroke.
    """
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    if rows.size == 0:
        return digit
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def digit_alpha(digit: np.ndarray, size_wh: tuple[int, int], min_alpha: float = 0.05) -> np.ndarray:
    """The alpha mask a digit contributes when scaled to ``size_wh``.

    Args:
        digit: (H, W) uint8 digit; its intensity is the alpha (255 = opaque).
        size_wh: (width, height) to scale it to.
        min_alpha: alpha values below this are set to 0 (invisible fringe), so the tight box of the
            mask is the box of everything that gets painted.

    Returns:
        (height, width) float32 mask in [0, 1].
    """
    if digit.ndim != 2 or digit.dtype != np.uint8:
        raise ValueError(f"digit must be a 2-D uint8 array, got {digit.dtype} {digit.shape}")
    alpha = resize(digit, size_wh).astype(np.float32) / 255.0
    alpha[alpha < min_alpha] = 0.0
    return alpha


def paste_digit(
    canvas: np.ndarray,
    digit: np.ndarray,
    box_xywh: tuple[int, int, int, int],
    color: Sequence[int],
    *,
    opacity: float = 1.0,
    min_alpha: float = 0.05,
) -> tuple[int, int, int, int]:
    """Alpha-composite a grayscale digit, scaled into a box, onto an RGB canvas (in place).

    Args:
        canvas: (H, W, 3) uint8 RGB image, modified in place.
        digit: (h, w) uint8 digit; its intensity is the alpha mask (trim it first for a snug fit).
        box_xywh: (x, y, width, height) in canvas pixels the digit is stretched to; parts outside
            the canvas are clipped.
        color: RGB stroke colour, 0..255 each.
        opacity: multiplies the alpha mask.
        min_alpha: final alpha below this is not painted (see ``digit_alpha``).

    Returns:
        The tight box (x0, y0, x1, y1) of the painted stroke, x1/y1 exclusive, inside the canvas;
        every pixel the call may change lies in it.
    """
    if canvas.ndim != 3 or canvas.shape[2] != 3 or canvas.dtype != np.uint8:
        raise ValueError(f"canvas must be an (H, W, 3) uint8 array, got {canvas.dtype} {canvas.shape}")
    x, y, w, h = (int(v) for v in box_xywh)
    if w <= 0 or h <= 0:
        raise ValueError(f"box must have a positive size, got {box_xywh}")
    alpha = digit_alpha(digit, (w, h), min_alpha=0.0) * np.float32(opacity)
    alpha[alpha < min_alpha] = 0.0
    ch, cw = canvas.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, cw), min(y + h, ch)
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x] if x1 > x0 and y1 > y0 else alpha[:0, :0]
    rows, cols = np.flatnonzero(a.any(axis=1)), np.flatnonzero(a.any(axis=0))
    if rows.size == 0:
        raise ValueError(f"box {box_xywh} leaves no visible stroke on a {cw}x{ch} canvas")
    # Only the tight region is touched, so the returned box provably holds every changed pixel.
    ty0, ty1, tx0, tx1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    a = a[ty0:ty1, tx0:tx1, None]
    region = canvas[y0 + ty0 : y0 + ty1, x0 + tx0 : x0 + tx1]
    rgb = np.asarray(color, dtype=np.float32).reshape(1, 1, 3)
    blended = region.astype(np.float32) * (1.0 - a) + rgb * a
    region[...] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return int(x0 + tx0), int(y0 + ty0), int(x0 + tx1), int(y0 + ty1)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of RGB values in 0..255 (last axis is the channel)."""
    return np.asarray(rgb, dtype=np.float32) @ _LUMA


def contrasting_color(background_luma: float, rng: np.random.Generator, min_diff: float = 80.0) -> tuple[int, int, int]:
    """A random colour whose luma differs from ``background_luma`` by at least ``min_diff``.

    A random hue is darkened (mixed with black) or lightened (mixed with white) to a target luma
    drawn from the allowed range on either side, so colours stay varied but always readable.

    Args:
        background_luma: luma (0..255) of the pixels the stroke will cover.
        rng: source of randomness (always consumed the same way, for reproducible scenes).
        min_diff: minimum luma difference; if no luma in 0..255 is that far, the farthest extreme is used.

    Returns:
        (r, g, b) ints in 0..255.
    """
    base = rng.integers(0, 256, size=3).astype(np.float32)
    side, u = rng.random(), rng.random()
    ranges = []
    if background_luma - min_diff >= 0:
        ranges.append((0.0, background_luma - min_diff))
    if background_luma + min_diff <= 255:
        ranges.append((background_luma + min_diff, 255.0))
    if ranges:
        lo, hi = ranges[int(side * len(ranges))]
        target = lo + u * (hi - lo)
    else:
        target = 0.0 if background_luma >= 127.5 else 255.0
    base_luma = float(luminance(base))
    if target <= base_luma:
        color = base * (target / base_luma) if base_luma > 0 else base
    else:
        color = base + (255.0 - base) * ((target - base_luma) / (255.0 - base_luma))
    r, g, b = (int(v) for v in np.clip(np.rint(color), 0, 255))
    return r, g, b


def clutter_image(
    digit: np.ndarray,
    backgrounds: Sequence[np.ndarray],
    size: int,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.4, 0.9),
    min_contrast: float = 80.0,
) -> np.ndarray:
    """One classification image: a digit at random scale, place and colour on a real photo crop.

    Args:
        digit: (h, w) uint8 MNIST digit (white on black).
        backgrounds: RGB photos from ``load_backgrounds``.
        size: output side in pixels.
        rng: source of randomness; the image is a pure function of its state.
        scale: range of the digit stroke's height as a fraction of ``size``.
        min_contrast: minimum luma difference between the stroke colour and the photo under it.

    Returns:
        (size, size, 3) uint8 RGB image.
    """
    if not backgrounds:
        raise ValueError("need at least one background photo")
    photo = backgrounds[int(rng.integers(len(backgrounds)))]
    canvas = random_crop(photo, (size, size), rng, zoom=(1.0, 4.0))
    stroke = trim_digit(digit)
    sh, sw = stroke.shape
    h = max(4, min(size, round(float(rng.uniform(*scale)) * size)))
    w = max(1, round(h * sw / sh))
    if w > size:  # a wide stroke at a large scale: keep its aspect ratio, shrink both sides
        h, w = max(1, round(h * size / w)), size
    x = int(rng.integers(0, size - w + 1))
    y = int(rng.integers(0, size - h + 1))
    alpha = digit_alpha(stroke, (w, h))
    covered = luminance(canvas[y : y + h, x : x + w])
    local = float((covered * alpha).sum() / max(float(alpha.sum()), 1e-6))
    paste_digit(canvas, stroke, (x, y, w, h), contrasting_color(local, rng, min_contrast))
    return canvas

"""Segmentation data in memory: a ``MaskSample`` per image, a ``MaskSet`` per split, mask reading and checking.

Every loader (folders of images + masks in the plain or Pascal VOC layout, COCO JSON) produces this one form, and
every sample is checked the same way before training: the image and its mask can be read, the mask has the
image's size, and every mask value is a class or 255 (ignore). Every problem of a split is collected in one
``Problems`` report (as detection does it), so a user fixes a bad data set in one pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeres.data.detection_samples import Problems, image_size
from edgeres.tasks.segment.classes import IGNORE, IGNORE_COLOR, ClassMap

MIN_IMAGE_SIDE = 32  # the backbone's stride: a smaller image has no pixel left at its deepest level
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")  # lossless only: a JPEG mask's values are not classes


@dataclass(frozen=True)
class MaskSample:
    """One image and where its mask comes from.

    Attributes:
        image: the image file.
        width: image width in pixels.
        height: image height in pixels.
        mask: the mask file (folder layouts), or None when ``rasterise`` draws it (COCO).
        rasterise: () -> (height, width) uint8 mask, for masks drawn from polygons or RLE.
    """

    image: Path
    width: int
    height: int
    mask: Path | None = None
    rasterise: Callable[[], np.ndarray] | None = field(default=None, compare=False, repr=False)


@dataclass
class MaskSet:
    """The images of one split with their masks, the class names mask values index, and counts.

    Attributes:
        samples: one ``MaskSample`` per image, in file order.
        classes: names (and colours, when given) of the mask values 0..C-1.
        source: "voc", "folders" or "coco".
        summary: images and per-class pixel fractions, counted while the masks were checked.
    """

    samples: list[MaskSample]
    classes: ClassMap
    source: str
    summary: dict = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return list(self.classes.names)

    def __len__(self) -> int:
        return len(self.samples)

    def read_mask(self, i: int) -> np.ndarray:
        """The (height, width) uint8 class-index mask of sample ``i`` (255 = ignore)."""
        sample = self.samples[i]
        if sample.rasterise is not None:
            return sample.rasterise()
        mask, problem = read_mask_file(sample.mask, self.classes)
        if problem:  # checked when loaded; the file changed since
            from edgeres.errors import DataError

            raise DataError(f"{sample.mask}: {problem}")
        return mask


def read_mask_file(path: Path, classes: ClassMap) -> tuple[np.ndarray | None, str | None]:
    """Decode a mask file into class indices: palette or single-channel PNGs as they are, RGB ones through the
    labelmap's colours (VOC's void colour is 255).

    Returns:
        (mask, None) or (None, what is wrong with the file).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in ("RGBA", "LA"):
                im = im.convert(mode[:-1])
                mode = im.mode
            arr = np.asarray(im)
    except FileNotFoundError:
        return None, "mask file not found"
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return None, f"cannot read the mask ({str(exc)[:120] or type(exc).__name__})"
    if mode in ("P", "L"):
        return np.ascontiguousarray(arr, np.uint8), None
    if mode == "1":
        return arr.astype(np.uint8), None
    if mode.startswith("I"):  # 16/32-bit single channel: values must still fit a class or 255
        if arr.size and (arr.min() < 0 or arr.max() > IGNORE):
            return None, f"mask value {int(arr.max())} is no class (masks hold class indices and 255 = ignore)"
        return arr.astype(np.uint8), None
    if mode == "RGB":
        if arr.size and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
            return np.ascontiguousarray(arr[..., 0]), None  # a grey mask saved as RGB
        if classes.colors is None:
            return None, (
                f"mask is RGB colour but {classes.source} gives no colours; give 'name:r,g,b::' lines in "
                "labelmap.txt or save masks as single-channel or palette PNGs"
            )
        return _rgb_to_index(arr, classes.colors)
    return None, f"mask has image mode {mode}; expected a single-channel, palette or RGB PNG"


def _rgb_to_index(rgb: np.ndarray, colors: list[tuple[int, int, int]]) -> tuple[np.ndarray | None, str | None]:
    code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    lookup = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(colors)}
    lookup.setdefault((IGNORE_COLOR[0] << 16) | (IGNORE_COLOR[1] << 8) | IGNORE_COLOR[2], IGNORE)
    found, inverse = np.unique(code, return_inverse=True)
    unknown = [int(c) for c in found if int(c) not in lookup]
    if unknown:
        shown = ", ".join(f"({c >> 16},{(c >> 8) & 255},{c & 255})" for c in unknown[:3])
        return None, f"mask colour {shown} is no class colour of the labelmap"
    table = np.array([lookup[int(c)] for c in found], np.uint8)
    return table[inverse.reshape(code.shape)], None


def check_sample(sample: MaskSample, classes: ClassMap, problems: Problems, name: str, counts: np.ndarray) -> bool:
    """Check one sample: readable image and mask, equal sizes, only known values; add its pixels to ``counts``.

    Args:
        name: how the report names the sample (its image path relative to the split).
        counts: (C + 1,) pixel counts per class and (last) ignored, updated in place.

    Returns:
        Whether the sample is usable.
    """
    ok = True
    if sample.width < MIN_IMAGE_SIDE or sample.height < MIN_IMAGE_SIDE:
        problems.add(
            name,
            f"image is {sample.width}x{sample.height}, smaller than the network's stride "
            f"({MIN_IMAGE_SIDE} px on each side)",
        )
        ok = False
    if sample.rasterise is not None:
        try:
            mask, problem = sample.rasterise(), None
        except Exception as exc:  # pycocotools raises bare exceptions on malformed polygons or RLE
            mask, problem = None, f"cannot rasterise its annotations ({str(exc)[:120] or type(exc).__name__})"
    else:
        mask, problem = read_mask_file(sample.mask, classes)
    if problem:
        problems.add(name if sample.mask is None else _rel(sample.mask, sample.image, name), problem)
        return False
    if mask.shape != (sample.height, sample.width):
        problems.add(name, f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {sample.width}x{sample.height}")
        return False
    c = len(classes.names)
    hist = np.bincount(mask.reshape(-1), minlength=256)
    bad = np.flatnonzero(hist[c:IGNORE])
    if bad.size:
        values = ", ".join(str(int(v) + c) for v in bad[:5])
        problems.add(
            name, f"mask value {values} is no class ({classes.source} names {c} classes: 0..{c - 1}; 255 = ignore)"
        )
        return False
    counts[:c] += hist[:c]
    counts[c] += hist[IGNORE]
    return ok


def _rel(mask: Path, image: Path, name: str) -> str:
    return f"{name} (mask {mask.parent.name}/{mask.name})"


def probe_image(path: Path, problems: Problems, name: str) -> tuple[int, int] | None:
    """(width, height) from the image header, or None with the problem recorded."""
    try:
        return image_size(path)
    except FileNotFoundError:
        problems.add(name, "image file not found")
    except OSError as exc:
        problems.add(name, f"cannot read the image ({exc.strerror or exc})")
    return None


def summarize(counts: np.ndarray, class_names: list[str], images: int) -> dict:
    """Per-class pixel fractions of the labelled pixels, and the ignored share of all pixels."""
    labelled = max(int(counts[:-1].sum()), 1)
    total = max(int(counts.sum()), 1)
    return {
        "images": images,
        "pixels": int(counts.sum()),
        "ignored_fraction": round(float(counts[-1]) / total, 6),
        "per_class": {n: round(float(v) / labelled, 6) for n, v in zip(class_names, counts[:-1], strict=True)},
    }


def finish(samples: list[MaskSample], names: list[str], classes: ClassMap, source: str, problems: Problems) -> MaskSet:
    """Check every sample, raise one report of every problem, or return the split."""
    counts = np.zeros(len(classes.names) + 1, np.int64)
    for sample, name in zip(samples, names, strict=True):
        check_sample(sample, classes, problems, name, counts)
    if not samples and not len(problems):
        problems.add(".", "no images")
    problems.raise_if_any()
    return MaskSet(samples, classes, source, summarize(counts, list(classes.names), len(samples)))

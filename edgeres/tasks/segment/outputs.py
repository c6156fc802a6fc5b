"""A segmenter's outputs for people and programs: logits -> class map (numpy), its JSON form, the overlay.

Decoding is one bilinear upsampling of the logits from the network's output grid straight to the original
image size (half-pixel centres, as ``torch.nn.functional.interpolate(..., align_corners=False)``; the stretch
resize of pre-processing is linear too, so one resize maps output cells onto image pixels) and an argmax per
pixel. Upsampling scores, not labels, is what keeps boundaries smooth instead of blocky stride-4 cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeres.errors import EdgeresError, require
from edgeres.tasks.segment.classes import voc_palette

DEFAULT_ALPHA = 0.5  # overlay opacity: the scene stays visible under the colours
VIEWS = ("overlay", "mask")
DEFAULT_SETTINGS = {"overlay_alpha": DEFAULT_ALPHA, "view": "overlay"}
LEGEND_ROWS = 8  # classes listed in the legend, largest first
BACKGROUND_NAMES = ("background", "_background_", "__background__", "bg")


@dataclass(frozen=True, eq=False)
class Segmentation:
    """One image's decoded prediction.

    Attributes:
        classes: (height, width) uint8 class index per pixel, at the original image size.
    """

    classes: np.ndarray

    def fractions(self, num_classes: int) -> np.ndarray:
        """(num_classes,) share of the image's pixels per class."""
        counts = np.bincount(self.classes.reshape(-1), minlength=num_classes)[:num_classes]
        return counts / max(self.classes.size, 1)


def class_maps(outputs: np.ndarray, image_hws: list[tuple[int, int]]) -> list[np.ndarray]:
    """(N, C, h, w) logits -> per image a (H, W) uint8 class map at its own size (bilinear upsampling, argmax)."""
    cv2 = require("cv2", "desktop")
    outputs = np.asarray(outputs, np.float32)
    if outputs.ndim != 4:
        raise EdgeresError(f"a segmenter's output must be [N, C, H, W] logits; got shape {list(outputs.shape)}")
    maps = []
    for logits, (h, w) in zip(outputs, image_hws, strict=True):
        hwc = np.ascontiguousarray(logits.transpose(1, 2, 0))
        if hwc.shape[:2] != (h, w):
            hwc = cv2.resize(hwc, (int(w), int(h)), interpolation=cv2.INTER_LINEAR)
            if hwc.ndim == 2:  # OpenCV drops a single channel's axis
                hwc = hwc[..., None]
        maps.append(hwc.argmax(axis=2).astype(np.uint8))
    return maps


def check_settings(found: dict) -> dict:
    alpha, view = found["overlay_alpha"], found["view"]
    if not 0.0 <= float(alpha) <= 1.0:
        raise EdgeresError(f"--overlay-alpha must be in [0, 1], got {alpha}")
    if view not in VIEWS:
        raise EdgeresError(f"unknown --view '{view}'; accepted: {', '.join(VIEWS)}")
    return {"overlay_alpha": float(alpha), "view": view}


def settings(manifest: dict, overrides: dict) -> dict:
    """Drawing settings: the defaults, overridden where asked (``overlay_alpha``, ``view``)."""
    if manifest and "segmentation" not in manifest:
        raise EdgeresError("the engine manifest has no 'segmentation' block; rebuild the engine with this edgeres")
    found = dict(DEFAULT_SETTINGS)
    for key in DEFAULT_SETTINGS:
        if overrides.get(key) is not None:
            found[key] = overrides[key]
    return check_settings(found)


def manifest_block(settings: dict) -> dict:
    """How a segmenter's output is decoded, recorded so every consumer (DeepStream, Triton) does the same."""
    return {
        "segmentation": {
            "decoder": "upsample_argmax",
            "upsample": "bilinear_half_pixel",
            "ignore_index": 255,
            "palette": "voc",
        }
    }


def decode(outputs: np.ndarray, image_hws, input_hw, class_names: list[str], settings: dict) -> list[Segmentation]:
    """The one decoder behind eval, predict, bench and the camera loop."""
    if np.asarray(outputs).shape[1] != len(class_names):
        raise EdgeresError(
            f"the model gives {np.asarray(outputs).shape[1]} class maps but names {len(class_names)} classes"
        )
    return [Segmentation(m) for m in class_maps(outputs, list(image_hws))]


def to_json(prediction: Segmentation, class_names: list[str]) -> list[dict]:
    """The classes present, largest first: name, index and share of the image's pixels."""
    fractions = prediction.fractions(len(class_names))
    order = np.argsort(-fractions, kind="stable")
    return [
        {"label": class_names[i], "index": int(i), "fraction": round(float(fractions[i]), 6)}
        for i in order
        if fractions[i] > 0
    ]


def colors_bgr(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 BGR colours: Pascal VOC's palette, the one the palette PNGs carry."""
    return voc_palette(max(num_classes, 1))[:, ::-1].copy()


def _coloured(class_names: list[str]) -> np.ndarray:
    keep = np.ones(len(class_names), bool)
    if class_names and class_names[0].lower() in BACKGROUND_NAMES:
        keep[0] = False  # the background is left as the scene, not painted black
    return keep


def draw(image: np.ndarray, prediction: Segmentation, class_names: list[str], settings: dict) -> np.ndarray:
    """Alpha-blend each class's colour over ``image`` (BGR, in place) and list the classes present in a legend.

    ``view`` "mask" draws the colour mask alone (background black), for looking at the boundaries themselves.
    """
    s = check_settings({**DEFAULT_SETTINGS, **{k: v for k, v in (settings or {}).items() if k in DEFAULT_SETTINGS}})
    classes = prediction.classes
    if classes.shape != image.shape[:2]:
        raise EdgeresError(
            f"class map is {classes.shape[1]}x{classes.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}"
        )
    palette = colors_bgr(len(class_names))
    colour = palette[classes]
    if s["view"] == "mask":
        image[...] = colour
    else:
        painted = _coloured(class_names)[classes]
        a = np.float32(s["overlay_alpha"])
        blend = image[painted].astype(np.float32) * (1 - a) + colour[painted].astype(np.float32) * a
        image[painted] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    draw_legend(image, prediction, class_names, palette)
    return image


def draw_legend(image: np.ndarray, prediction: Segmentation, class_names: list[str], palette: np.ndarray) -> None:
    """A colour swatch, the name and the pixel share of each class present (largest first), top right."""
    cv2 = require("cv2", "desktop")
    from edgeres.drawing import text_scale

    fractions = prediction.fractions(len(class_names))
    present = [int(i) for i in np.argsort(-fractions, kind="stable") if fractions[i] > 0][:LEGEND_ROWS]
    if not present:
        return
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5 * text_scale(image)
    thick = max(1, round(text_scale(image)))
    lines = [f"{class_names[i]}: {100 * fractions[i]:.0f}%" for i in present]
    sizes = [cv2.getTextSize(t, font, scale, thick)[0] for t in lines]
    row = max(h for _, h in sizes) + max(4, round(6 * text_scale(image)))
    pad = max(3, round(5 * text_scale(image)))
    swatch = row - pad // 2
    ih, iw = image.shape[:2]
    box_w, box_h = swatch + 3 * pad + max(w for w, _ in sizes), row * len(lines) + pad
    x0, y0 = max(0, iw - box_w - pad), pad
    x1, y1 = min(iw, x0 + box_w), min(ih, y0 + box_h)
    region = image[y0:y1, x0:x1]
    region[...] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darkened: white text stays readable
    for n, (i, text) in enumerate(zip(present, lines, strict=True)):
        top = y0 + pad // 2 + n * row
        cv2.rectangle(
            image, (x0 + pad, top), (x0 + pad + swatch - 1, top + swatch - 1), tuple(int(v) for v in palette[i]), -1
        )
        cv2.putText(
            image, text, (x0 + 2 * pad + swatch, top + swatch - 2), font, scale, (255, 255, 255), thick, cv2.LINE_AA
        )


def write_class_map_png(prediction: Segmentation, path: Path) -> None:
    """The class map as a palette PNG (pixel = class index, VOC's palette), written atomically: any VOC tool,
    Pillow's ``np.asarray(Image.open(path))`` or CVAT reads it back as class indices."""
    from PIL import Image

    from edgeres.fileio import atomic_path

    im = Image.fromarray(prediction.classes, mode="P")
    im.putpalette(voc_palette(256).reshape(-1).tolist())
    with atomic_path(Path(path)) as tmp:
        im.save(tmp, format="PNG")

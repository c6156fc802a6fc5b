"""COCO instance or stuff annotations rasterised into class-index masks with pycocotools.

Class 0 is "background" (pixels no annotation covers); COCO's categories follow in id order (1..K). As in
torchvision's segmentation reference (``references/segmentation/coco_utils.py``), a pixel that instances of two
different categories both cover is 255 (ignore), and so is a crowd region (``iscrowd: 1``): neither is a clean
label. Polygons, uncompressed and compressed RLE are all read by pycocotools' own ``frPyObjects``/``decode``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeres.data.detection_samples import Problems
from edgeres.errors import DataError, require
from edgeres.tasks.segment.classes import IGNORE, ClassMap
from edgeres.tasks.segment.masks import MaskSample, MaskSet, finish, probe_image

BACKGROUND = "background"


def rasterise(annotations: list[dict], height: int, width: int, class_of: dict[int, int]) -> np.ndarray:
    """One image's annotations as a (height, width) uint8 class-index mask.

    Args:
        annotations: the image's COCO annotations (``segmentation``, ``category_id``, ``iscrowd``).
        class_of: COCO category id -> class index (1..K).

    Returns:
        The mask: 0 background, the class where one category covers a pixel, 255 where two categories overlap
        or a crowd region lies.
    """
    mask_utils = require("pycocotools.mask", "desktop")
    out = np.zeros((height, width), np.uint8)
    ignore = np.zeros((height, width), bool)
    for ann in annotations:
        covered = _decode(mask_utils, ann["segmentation"], height, width)
        if ann.get("iscrowd"):
            ignore |= covered
            continue
        cls = class_of[int(ann["category_id"])]
        ignore |= covered & (out != 0) & (out != cls)
        out[covered] = cls
    out[ignore] = IGNORE
    return out


def _decode(mask_utils, segmentation, height: int, width: int) -> np.ndarray:
    if isinstance(segmentation, list):  # polygons
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict):
        rle = dict(segmentation)
        if isinstance(rle.get("counts"), str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise ValueError(f"segmentation is a {type(segmentation).__name__}; expected polygons or RLE")
    decoded = mask_utils.decode(rle)
    if decoded.shape[:2] != (height, width):
        raise ValueError(f"its RLE is {decoded.shape[1]}x{decoded.shape[0]}, not the image's {width}x{height}")
    return decoded.astype(bool)


def load_coco_masks(path: Path) -> MaskSet:
    """A COCO split: the JSON's images (relative to its folder or ``images/`` beside it) and their masks.

    Raises:
        DataError: listing every problem: malformed JSON, missing or unreadable images, an image whose size
            differs from the JSON's, unknown image or category ids, annotations without a segmentation.
    """
    from edgeres.data.coco import is_coco, read_json

    path = Path(path)
    folder = path.parent
    doc = read_json(path)
    if not is_coco(doc):
        raise DataError(f"{path} is not a COCO file: expected 'images', 'annotations' and 'categories' lists")
    problems = Problems(folder, f"COCO {path.name}")
    categories = sorted((c for c in doc["categories"] if isinstance(c, dict) and "id" in c), key=lambda c: c["id"])
    class_of = {int(c["id"]): i + 1 for i, c in enumerate(categories)}
    names = [BACKGROUND] + [str(c.get("name", c["id"])) for c in categories]
    if len(names) > IGNORE:
        raise DataError(f"{path} has {len(categories)} categories; masks hold at most {IGNORE - 1} besides background")
    classes = ClassMap(names, None, f"{path.name}'s categories")
    per_image: dict[int, list[dict]] = {}
    images = {int(im["id"]): im for im in doc["images"] if isinstance(im, dict) and "id" in im}
    for n, ann in enumerate(doc["annotations"]):
        where = f"{path.name} annotation {ann.get('id', f'#{n}') if isinstance(ann, dict) else f'#{n}'}"
        if not isinstance(ann, dict) or "segmentation" not in ann:
            problems.add(where, "has no 'segmentation' (polygons or RLE); a box alone is no mask")
        elif ann.get("image_id") not in images:
            problems.add(where, f"names image id {ann.get('image_id')}, which is not in 'images'")
        elif ann.get("category_id") not in class_of:
            problems.add(where, f"names category id {ann.get('category_id')}, which is not in 'categories'")
        else:
            per_image.setdefault(int(ann["image_id"]), []).append(ann)
    samples, sample_names = [], []
    for image_id, im in sorted(images.items()):
        file_name = str(im.get("file_name", ""))
        image = folder / file_name if (folder / file_name).is_file() else folder / "images" / file_name
        size = probe_image(image, problems, file_name or f"image id {image_id}")
        if size is None:
            continue
        declared = (im.get("width"), im.get("height"))
        if declared != (None, None) and declared != size:
            problems.add(file_name, f"image is {size[0]}x{size[1]} but {path.name} says {declared[0]}x{declared[1]}")
            continue
        anns = per_image.get(image_id, [])
        samples.append(
            MaskSample(
                image, size[0], size[1], rasterise=lambda a=anns, h=size[1], w=size[0]: rasterise(a, h, w, class_of)
            )
        )
        sample_names.append(file_name)
    return finish(samples, sample_names, classes, "coco", problems)

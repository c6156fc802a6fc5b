"""Where a segmentation set's images and masks are: Pascal VOC, plain image + mask folders, or COCO JSON.

- Pascal VOC: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNGs), the split lists in
  ``ImageSets/Segmentation/{train,val}.txt``; classes from ``labelmap.txt`` when present, else VOC's 21.
- Plain folders, as people make them: ``train/images`` + ``train/masks`` and ``val/...``, a mask paired with
  its image by file name (``a.jpg`` <-> ``a.png``); classes from ``labelmap.txt``, ``classes.txt`` or ``data.yaml``
  in the split folder or the root.
- COCO: ``train/`` and ``val/`` each holding one COCO JSON (instances or stuff) and its images; see ``coco_masks``.
"""

from __future__ import annotations

from pathlib import Path

from edgeres.data.detection_samples import Problems
from edgeres.errors import DataError
from edgeres.processing import IMAGE_EXTENSIONS
from edgeres.tasks.segment.classes import find_class_map
from edgeres.tasks.segment.masks import MASK_EXTENSIONS, MaskSample, MaskSet, finish, probe_image

SPLITS = ("train", "val")
ACCEPTED = (
    "a Pascal VOC folder (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/{train,val}.txt), "
    "train/ and val/ each with images/ and masks/, or train/ and val/ each with a COCO JSON and its images"
)


def layout_of(root: Path) -> str:
    """The layout ("voc", "folders" or "coco") of a data root holding both splits (or one split folder)."""
    root = Path(root)
    if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
        return "voc"
    for d in (root / "train", root / "val", root):
        if (d / "images").is_dir() and (d / "masks").is_dir():
            return "folders"
        if d.is_dir() and _coco_json(d) is not None:
            return "coco"
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    raise DataError(f"{root} is not a segmentation set; expected {ACCEPTED}")


def load_splits(root: Path) -> tuple[MaskSet, MaskSet]:
    """The train and val splits, each checked in full; both name the same classes."""
    root = Path(root)
    layout = layout_of(root)
    if layout != "voc" and not (root / "train").is_dir():
        raise DataError(f"{root} needs train/ and val/ split folders for training; expected {ACCEPTED}")
    train, val = (load_split(root, split) for split in SPLITS)
    if train.class_names != val.class_names:
        raise DataError(
            f"{root}: train and val name different classes ({train.class_names[:6]} vs {val.class_names[:6]})"
        )
    return train, val


def load_split(root: Path, split: str | None) -> MaskSet:
    """One split of the set at ``root`` (``split`` None: ``root`` is the split folder itself)."""
    root = Path(root)
    layout = layout_of(root)
    if layout == "voc":
        return load_voc(root, split or "val")
    folder = root / split if split else root
    if not folder.is_dir():
        raise DataError(f"{root} has no {split}/ split folder; expected {ACCEPTED}")
    if layout == "folders":
        return load_folders(folder)
    from edgeres.tasks.segment.coco_masks import load_coco_masks

    return load_coco_masks(_coco_json(folder))


def load_eval_split(path: Path) -> MaskSet:
    """The split to evaluate on: VOC's val list, ``path/val`` when ``path`` holds both splits, else ``path``."""
    path = Path(path)
    layout = layout_of(path)
    if layout == "voc":
        return load_voc(path, "val")
    return load_split(path, "val" if (path / "val").is_dir() else None)


def load_voc(root: Path, split: str) -> MaskSet:
    """A Pascal VOC split: the ids in ``ImageSets/Segmentation/<split>.txt``."""
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    problems = Problems(root, f"Pascal VOC, {split} split")
    try:
        ids = [line.split()[0] for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise DataError(f"{listing} not found; a VOC folder lists each split's image ids there") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {listing}: {getattr(exc, 'strerror', None) or exc}") from None
    classes = find_class_map([root], voc_default=True)
    samples, names = [], []
    for image_id in ids:
        image = _find_image(root / "JPEGImages", image_id)
        name = f"JPEGImages/{image_id}"
        mask = root / "SegmentationClass" / f"{image_id}.png"
        if image is None:
            problems.add(name, "image file not found (listed in " + f"ImageSets/Segmentation/{split}.txt)")
            continue
        if not mask.is_file():
            problems.add(f"JPEGImages/{image.name}", f"image has no mask (SegmentationClass/{image_id}.png)")
            continue
        size = probe_image(image, problems, f"JPEGImages/{image.name}")
        if size is not None:
            samples.append(MaskSample(image, size[0], size[1], mask=mask))
            names.append(f"JPEGImages/{image.name}")
    return finish(samples, names, classes, "voc", problems)


def load_folders(folder: Path) -> MaskSet:
    """A split folder with ``images/`` and ``masks/``; masks paired with images by file stem."""
    problems = Problems(folder, "images/ + masks/")
    classes = find_class_map(_class_folders(folder))
    images = _files(folder / "images", IMAGE_EXTENSIONS)
    masks: dict[str, Path] = {}
    for path in _files(folder / "masks", MASK_EXTENSIONS + IMAGE_EXTENSIONS):
        if path.suffix.lower() not in MASK_EXTENSIONS:
            problems.add(
                f"masks/{path.name}",
                f"a {path.suffix} mask is lossy; its values are not classes "
                f"(save masks as {', '.join(MASK_EXTENSIONS)})",
            )
        elif path.stem in masks:
            problems.add(f"masks/{path.name}", f"two masks for one image ({masks[path.stem].name} too)")
        else:
            masks[path.stem] = path
    samples, names = [], []
    seen = set()
    for image in images:
        name = f"images/{image.name}"
        mask = masks.get(image.stem)
        if image.stem in seen:
            problems.add(name, "two images share this file name stem; a mask pairs with one image by its stem")
            continue
        seen.add(image.stem)
        if mask is None:
            problems.add(name, f"image has no mask (expected masks/{image.stem}.png)")
            continue
        size = probe_image(image, problems, name)
        if size is not None:
            samples.append(MaskSample(image, size[0], size[1], mask=mask))
            names.append(name)
    for stem, mask in masks.items():
        if stem not in seen:
            problems.add(f"masks/{mask.name}", f"mask has no image (expected images/{stem}.jpg or .png)")
    return finish(samples, names, classes, "folders", problems)


def _class_folders(folder: Path) -> list[Path]:
    return [folder, folder.parent]


def _files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")
    )


def _find_image(folder: Path, stem: str) -> Path | None:
    for ext in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG"):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def _coco_json(folder: Path) -> Path | None:
    """The split folder's COCO file: ``annotations.json``, or its only ``*.json`` that is not a class file."""
    if (folder / "annotations.json").is_file():
        return folder / "annotations.json"
    found = sorted(p for p in folder.glob("*.json") if p.name != "dataset.json")
    return found[0] if len(found) == 1 else None

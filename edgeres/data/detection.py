"""Detection splits from disk, whatever the layout: COCO JSON or a YOLO folder, told apart by what is there.

``load_detection_split`` reads one split; ``load_detection_splits`` reads ``root/train`` and
``root/val`` and checks they name the same classes. Both fail before training with one report of
every problem found (see ``edgeres.data.detection_samples.Problems``); nothing is dropped silently.
"""

from __future__ import annotations

from pathlib import Path

from edgeres.data import coco, yolo
from edgeres.data.detection_samples import DetectionSet
from edgeres.errors import DataError

SPLITS = ("train", "val")
ACCEPTED_LAYOUTS = (
    "a COCO JSON file; a folder with annotations.json (or exactly one *.json in COCO form); "
    "or a YOLO folder with images/ and labels/ (class names in classes.txt or data.yaml)"
)


def load_detection_split(path: Path, verify_image_sizes: bool = True) -> DetectionSet:
    """Load one detection split, detecting its layout.

    In order: a ``.json`` file is COCO; a folder with ``annotations.json`` is COCO; a folder with
    ``images/`` and ``labels/`` is YOLO; a folder with exactly one ``*.json`` in COCO form is COCO.

    Args:
        path: the JSON file or the split folder.
        verify_image_sizes: COCO only: compare each image header's size with the JSON (YOLO always
            reads the headers, it needs the sizes).

    Returns:
        The split in the common form (``edgeres.data.detection_samples.DetectionSet``).

    Raises:
        DataError: the path is missing or matches no layout (the message lists the accepted ones),
            or the split has problems (all of them listed).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"detection data not found: {path}; accepted: {ACCEPTED_LAYOUTS}")
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise DataError(f"{path} is not a COCO .json file; accepted: {ACCEPTED_LAYOUTS}")
        return coco.load_coco(path, verify_image_sizes=verify_image_sizes)
    if (path / "annotations.json").is_file():
        return coco.load_coco(path / "annotations.json", verify_image_sizes=verify_image_sizes)
    if (path / "images").is_dir() and (path / "labels").is_dir():
        return yolo.load_yolo(path)
    jsons = sorted(p for p in path.glob("*.json") if p.is_file() and not p.name.startswith("."))
    if len(jsons) == 1:
        doc = coco.read_json(jsons[0])
        if coco.is_coco(doc):
            return coco.coco_from_dict(doc, jsons[0], verify_image_sizes=verify_image_sizes)
    found = f"{len(jsons)} .json file(s)" + (f" ({', '.join(p.name for p in jsons[:5])})" if jsons else "")
    hint = ""
    if all((path / s).is_dir() for s in SPLITS):
        hint = f"; it holds train/ and val/: pass {path / 'train'}, or read both with load_detection_splits"
    raise DataError(
        f"{path}: unknown detection layout (found {found} and no images/ + labels/){hint}; accepted: {ACCEPTED_LAYOUTS}"
    )


def load_detection_splits(root: Path, verify_image_sizes: bool = True) -> tuple[DetectionSet, DetectionSet]:
    """Load ``root/train`` and ``root/val`` (each in any layout ``load_detection_split`` accepts).

    Ultralytics' own layout, ``root/images/{train,val}`` + ``root/labels/{train,val}``, is read too.

    Args:
        root: folder holding ``train`` and ``val``.
        verify_image_sizes: passed to ``load_detection_split``.

    Returns:
        (train, val), with the same class names.

    Raises:
        DataError: a split is missing, either split has problems (both reports together), or the
            two splits name different classes.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"detection data folder not found: {root} (expected {root}/train and {root}/val)")
    missing = [s for s in SPLITS if not (root / s).exists()]
    ultralytics = all((root / kind / s).is_dir() for kind in ("images", "labels") for s in SPLITS)
    if missing and not ultralytics:
        raise DataError(
            f"{root} has no {' or '.join(missing)}; expected {root}/train and {root}/val, each one of: "
            f"{ACCEPTED_LAYOUTS}"
        )
    sets, reports = [], []
    for split in SPLITS:  # read both before failing: one run shows the problems of both splits
        try:
            if missing:  # Ultralytics' layout
                sets.append(yolo.load_yolo(root, split=split))
            else:
                sets.append(load_detection_split(root / split, verify_image_sizes=verify_image_sizes))
        except DataError as exc:
            reports.append(str(exc))
    if reports:
        raise DataError("\n".join(reports))
    train, val = sets
    if train.class_names != val.class_names:
        raise DataError(f"{root}/train and {root}/val name different classes: {train.class_names} vs {val.class_names}")
    return train, val

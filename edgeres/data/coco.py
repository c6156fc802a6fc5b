"""COCO detection JSON: ``images``, ``annotations`` (``bbox`` = [x, y, width, height]) and ``categories``.

Image ``file_name``s are looked up relative to the JSON's folder, then in ``images/`` beside it.
Category ids become contiguous class indices in id order. Every problem of the file is collected
(see ``edgeres.data.detection_samples.Problems``) and reported together.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeres.data.detection_samples import DetectionSample, DetectionSet, Problems, check_box, image_size, summarize
from edgeres.errors import DataError

REQUIRED_LISTS = ("images", "annotations", "categories")


def read_json(path: Path) -> object:
    """Parse a JSON file, or raise one DataError naming the file, line and column of the mistake."""
    path = Path(path)
    problems = Problems(path.parent, f"COCO {path.name}")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"COCO annotation file not found: {path}") from None
    except json.JSONDecodeError as exc:
        problems.add(path.name, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except UnicodeDecodeError as exc:
        problems.add(path.name, f"malformed JSON: not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        problems.add(path.name, f"cannot read the file: {exc.strerror or exc}")
    raise DataError(problems.message())


def is_coco(doc: object) -> bool:
    """Whether parsed JSON has the three lists of a COCO detection file."""
    return isinstance(doc, dict) and all(isinstance(doc.get(k), list) for k in REQUIRED_LISTS)


def load_coco(path: Path, verify_image_sizes: bool = True) -> DetectionSet:
    """Load one split from a COCO detection JSON file.

    Args:
        path: the JSON file.
        verify_image_sizes: read each image's header and compare its size with the JSON's width and
            height (cheap: the pixels are not decoded). Images are always checked to exist.

    Returns:
        The split, ``source="coco"``. ``iscrowd`` annotations are checked but left out of the boxes
        (they mark regions, not objects) and counted in ``summary["crowd_skipped"]``.

    Raises:
        DataError: listing every problem found: malformed JSON, missing or unreadable images, unknown
            image or category ids, boxes entirely outside their image or degenerate.
    """
    path = Path(path)
    doc = read_json(path)
    if not is_coco(doc):
        problems = Problems(path.parent, f"COCO {path.name}")
        problems.add(path.name, f"not COCO detection JSON: needs the lists {', '.join(map(repr, REQUIRED_LISTS))}")
        problems.raise_if_any()
    return coco_from_dict(doc, path, verify_image_sizes=verify_image_sizes)


def coco_from_dict(doc: dict, path: Path, verify_image_sizes: bool = True) -> DetectionSet:
    """Build the split from parsed COCO JSON (``path`` locates the images and names the file in reports)."""
    path = Path(path)
    folder, name = path.parent, path.name
    problems = Problems(folder, f"COCO {name}")

    class_index, class_names = _categories(doc["categories"], name, problems)
    images = _images(doc["images"], folder, name, problems, verify_image_sizes)

    per_image: dict[int, dict] = {iid: {"boxes": [], "labels": [], "clipped": 0, "crowd": 0} for iid in images}
    for k, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict):
            problems.add(name, f"annotation #{k} is not an object: {_short(ann)}")
            continue
        iid, cid, bbox = ann.get("image_id"), ann.get("category_id"), ann.get("bbox")
        image = images.get(iid) if _is_int(iid) else None
        where = f"annotation {_short(ann.get('id', f'#{k}'))}"
        if image is not None:
            where += f" (image {image['file_name']})"
        known_class = _is_int(cid) and cid in class_index
        if image is None:
            problems.add(name, f"{where}: image_id {_short(iid)} is not in 'images'")
        if not known_class:
            problems.add(name, f"{where}: category_id {_short(cid)} is not in 'categories' (ids: {_ids(class_index)})")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            problems.add(name, f"{where}: bbox must be 4 numbers [x, y, width, height], got {_short(bbox)}")
            continue
        if image is None or image["width"] is None:
            continue  # no size to judge the box against; the image's own problem is already listed
        x, y, w, h = (float(v) for v in bbox)
        box, clipped, problem = check_box((x, y, x + w, y + h), image["width"], image["height"])
        if problem is not None:
            problems.add(name, f"{where}: bbox {_short(bbox)} {problem}")
        elif known_class:
            entry = per_image[iid]
            if ann.get("iscrowd", 0):
                entry["crowd"] += 1
            else:
                entry["boxes"].append(box)
                entry["labels"].append(class_index[cid])
                entry["clipped"] += int(clipped)
    problems.raise_if_any()

    samples = [
        DetectionSample(
            path=image["path"],
            width=image["width"],
            height=image["height"],
            boxes=np.asarray(per_image[iid]["boxes"], dtype=np.float32).reshape(-1, 4),
            labels=np.asarray(per_image[iid]["labels"], dtype=np.int64),
            image_id=iid,
            clipped=per_image[iid]["clipped"],
            crowd_skipped=per_image[iid]["crowd"],
        )
        for iid, image in images.items()
    ]
    return DetectionSet(samples, class_names, "coco", summarize(samples, class_names))


def _categories(categories: list, name: str, problems: Problems) -> tuple[dict[int, int], list[str]]:
    """Category id -> contiguous class index (ids in ascending order), and the class names in that order."""
    names: dict[int, str] = {}
    for k, cat in enumerate(categories):
        cid = cat.get("id") if isinstance(cat, dict) else None
        cname = cat.get("name") if isinstance(cat, dict) else None
        if not _is_int(cid):
            problems.add(name, f"category #{k}: 'id' must be an integer, got {_short(cid)}")
        elif cid in names:
            problems.add(name, f"category #{k}: id {cid} is used twice")
        elif not isinstance(cname, str) or not cname.strip():
            problems.add(name, f"category {cid}: 'name' must be a non-empty string, got {_short(cname)}")
        elif cname in names.values():
            problems.add(name, f"category {cid}: name {cname!r} is used by another category too")
        else:
            names[cid] = cname
    if not categories:
        problems.add(name, "'categories' is empty; a detector needs at least one class")
    ids = sorted(names)
    return {cid: i for i, cid in enumerate(ids)}, [names[cid] for cid in ids]


def _images(images: list, folder: Path, name: str, problems: Problems, verify_sizes: bool) -> dict[int, dict]:
    """Image id -> {file_name, path, width, height}; problems for bad entries, missing or unreadable files.

    Every entry with a usable id is returned, even with a problem, so its annotations are still checked.
    """
    out: dict[int, dict] = {}
    for k, img in enumerate(images):
        if not isinstance(img, dict):
            problems.add(name, f"image #{k} is not an object: {_short(img)}")
            continue
        iid, file_name = img.get("id"), img.get("file_name")
        if not _is_int(iid):
            problems.add(name, f"image #{k}: 'id' must be an integer, got {_short(iid)}")
            continue
        if iid in out:
            problems.add(name, f"image {iid}: id is used by two images")
            continue
        record = {"file_name": file_name, "path": None, "width": None, "height": None}
        out[iid] = record
        if not isinstance(file_name, str) or not file_name:
            problems.add(name, f"image {iid}: 'file_name' must be a non-empty string, got {_short(file_name)}")
            continue
        width, height = img.get("width"), img.get("height")
        sized = all(_is_int(v) or (_is_number(v) and float(v).is_integer()) for v in (width, height))
        if sized and min(width, height) > 0:
            record["width"], record["height"] = int(width), int(height)
        elif width is not None or height is not None:
            problems.add(
                name,
                f"image {iid} ({file_name}): width and height must be positive integers, "
                f"got {_short(width)} x {_short(height)}",
            )
        path = _resolve(folder, file_name)
        if path is None:
            problems.add(
                file_name, f"image file not found (image {iid} in {name}; looked in {folder} and {folder / 'images'})"
            )
            continue
        record["path"] = path
        if verify_sizes or record["width"] is None:
            try:
                actual = image_size(path)
            except OSError as exc:
                problems.add(file_name, f"unreadable image ({exc.strerror or exc}; image {iid} in {name})")
                continue
            if record["width"] is None:
                record["width"], record["height"] = actual
            elif actual != (record["width"], record["height"]):
                problems.add(
                    file_name,
                    f"image is {actual[0]}x{actual[1]} but {name} says "
                    f"{record['width']}x{record['height']} (image {iid})",
                )
    return out


def _resolve(folder: Path, file_name: str) -> Path | None:
    for candidate in (folder / file_name, folder / "images" / file_name):
        if candidate.is_file():
            return candidate
    return None


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ids(index: dict[int, int], limit: int = 12) -> str:
    ids = sorted(index)
    if not ids:
        return "none"
    more = f", ... ({len(ids)} in all)" if len(ids) > limit else ""
    return ", ".join(map(str, ids[:limit])) + more


def _short(v: object, limit: int = 60) -> str:
    """A JSON value as the user wrote it, cut short so one problem stays one line."""
    text = json.dumps(v)
    return text if len(text) <= limit else text[:limit] + "..."

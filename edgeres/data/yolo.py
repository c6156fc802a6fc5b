"""YOLO detection folders: ``images/`` and ``labels/`` side by side, one ``cls cx cy w h`` line per object.

Coordinates are normalized to 0..1 of the image size, so each image's header is read (not its
pixels) to turn them into pixels. ``labels/a/b.txt`` belongs to ``images/a/b.<ext>``. An empty label
file is an image with no objects; so is an image without a label file (as Ultralytics reads it), but
that one is counted in ``summary["images_without_label_file"]`` in case the file was forgotten.

Class names come from ``classes.txt`` (one per line) or the ``names:`` entry of ``data.yaml`` /
``dataset.yaml``, in the folder or its parent. PyYAML is not a dependency, so ``names:`` is read by a
small parser that knows the forms these files use: ``names: [a, b]``, a block list of ``- a`` lines,
or a block or inline mapping ``0: a``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeres.data.detection_samples import DetectionSample, DetectionSet, Problems, check_box, image_size, summarize
from edgeres.errors import DataError
from edgeres.processing import IMAGE_EXTENSIONS

CLASS_FILES = ("classes.txt", "data.yaml", "dataset.yaml")
LAYOUT = "YOLO images/ + labels/"
ULTRALYTICS_SPLITS = ("train", "val")  # images/train, labels/train, ... under one root
# A normalized coordinate this large can only be a pixel value written by mistake.
_NOT_NORMALIZED = 2.0


def load_yolo(folder: Path, split: str | None = None) -> DetectionSet:
    """Load one split from a YOLO folder holding ``images/`` and ``labels/``.

    Args:
        folder: the split folder, e.g. ``data/scenes/train``; or, with ``split``, the root of
            Ultralytics' own layout ``images/<split>`` + ``labels/<split>``.
        split: the subfolder of ``images/`` and ``labels/`` to read (Ultralytics' layout), or None.

    Returns:
        The split, ``source="yolo"``; ``image_id`` is the image's index in sorted path order.

    Raises:
        DataError: no class names found; or, listing every problem: unreadable or malformed label
            files (wrong field count, non-numbers, class outside the class list), boxes entirely
            outside their image or degenerate, unreadable images, label files with no image.
    """
    folder = Path(folder)
    images_dir, labels_dir = folder / "images", folder / "labels"
    if split is not None:
        images_dir, labels_dir = images_dir / split, labels_dir / split
    for d in (images_dir, labels_dir):
        if not d.is_dir():
            raise DataError(
                f"YOLO folder {folder} has no {d.relative_to(folder).as_posix()}/ subfolder; "
                f"expected {images_dir} and {labels_dir}"
            )
    if split is None and all((images_dir / s).is_dir() for s in ULTRALYTICS_SPLITS):
        # Reading it as one split would silently mix the validation images into training.
        raise DataError(
            f"{folder} holds images/train and images/val (Ultralytics' split layout), not one split; "
            f"read both with load_detection_splits({folder})"
        )
    class_names, names_file = find_class_names(folder)
    layout = LAYOUT if split is None else f"YOLO images/{split} + labels/{split}"
    problems = Problems(folder, layout)

    image_files, label_owner = [], {}
    for path in _files(images_dir):
        rel = path.relative_to(folder).as_posix()
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            problems.add(rel, f"not an image file; accepted: {', '.join(IMAGE_EXTENSIONS)}")
            continue
        label = labels_dir / path.relative_to(images_dir).with_suffix(".txt")
        if label in label_owner:
            problems.add(rel, f"shares its label file with {label_owner[label]}; give images distinct names")
            continue
        label_owner[label] = rel
        image_files.append((path, label))

    for label in _files(labels_dir):
        if label.suffix == ".txt" and label.name not in CLASS_FILES and label not in label_owner:
            problems.add(
                label.relative_to(folder).as_posix(),
                f"label file has no image in {images_dir.relative_to(folder).as_posix()}/",
            )

    samples = []
    for image_id, (path, label) in enumerate(image_files):
        rel = path.relative_to(folder).as_posix()
        try:
            width, height = image_size(path)
        except OSError as exc:
            problems.add(rel, f"unreadable image ({exc.strerror or exc})")
            continue
        if not label.exists():
            samples.append(DetectionSample(path, width, height, np.zeros((0, 4)), [], image_id, no_label_file=True))
            continue
        boxes, labels, clipped = _read_labels(label, folder, width, height, class_names, names_file, problems)
        samples.append(DetectionSample(path, width, height, boxes, labels, image_id, clipped=clipped))
    problems.raise_if_any()
    return DetectionSet(samples, class_names, "yolo", summarize(samples, class_names))


def _files(root: Path) -> list[Path]:
    """Every non-hidden file under ``root``, sorted (hidden folders such as .ipynb_checkpoints skipped)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _read_labels(
    label: Path,
    folder: Path,
    width: int,
    height: int,
    class_names: list[str],
    names_file: Path,
    problems: Problems,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Boxes (pixels, clipped), labels and the clipped count of one label file; problems are recorded."""
    rel = label.relative_to(folder).as_posix()
    try:
        text = label.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.add(rel, f"unreadable label file: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 0
    except OSError as exc:
        problems.add(rel, f"unreadable label file ({exc.strerror or exc})")
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 0
    boxes, labels, clipped = [], [], 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            hint = " (polygon segments are not supported)" if len(fields) > 5 else ""
            problems.add(rel, f"line {lineno}: expected 5 fields 'class cx cy w h', got {len(fields)}{hint}")
            continue
        try:
            values = [float(f) for f in fields]
        except ValueError:
            bad = next(f for f in fields if not _is_float(f))
            problems.add(rel, f"line {lineno}: {bad!r} is not a number")
            continue
        cls, cx, cy, w, h = values
        if not cls.is_integer() or not 0 <= cls < len(class_names):
            problems.add(
                rel,
                f"line {lineno}: class {fields[0]} is not in 0..{len(class_names) - 1} "
                f"({len(class_names)} classes in {names_file.name})",
            )
            continue
        if max(abs(cx), abs(cy), abs(w), abs(h)) > _NOT_NORMALIZED:
            problems.add(rel, f"line {lineno}: coordinates must be normalized to 0..1 of the image, got {line.strip()}")
            continue
        box, was_clipped, problem = check_box(
            ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height), width, height
        )
        if problem is not None:
            problems.add(rel, f"line {lineno}: box {' '.join(fields[1:])} {problem}")
            continue
        boxes.append(box)
        labels.append(int(cls))
        clipped += int(was_clipped)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64), clipped


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def find_class_names(folder: Path) -> tuple[list[str], Path]:
    """The class names of a YOLO folder and the file they came from.

    Looks for ``classes.txt``, ``data.yaml``, ``dataset.yaml`` in ``folder``, then in its parent (where
    one ``data.yaml`` usually serves ``train/`` and ``val/``).

    Raises:
        DataError: no such file, or one that cannot be read as a list of names.
    """
    folder = Path(folder)
    for d in (folder, folder.parent):
        for name in CLASS_FILES:
            path = d / name
            if path.is_file():
                names = _read_classes_txt(path) if name.endswith(".txt") else read_yaml_names(path)
                return names, path
    raise DataError(
        f"no class names for YOLO folder {folder}: expected classes.txt (one name per line) or data.yaml / "
        f"dataset.yaml with a 'names:' list, in {folder} or {folder.parent}"
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read class names from {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _read_classes_txt(path: Path) -> list[str]:
    names = [line.strip() for line in _read_text(path).splitlines() if line.strip()]
    if not names:
        raise DataError(f"{path} lists no class names; expected one name per line")
    _check_unique(names, path)
    return names


_YAML_FORMS = "names: [a, b], a block list of '- a' lines, or a mapping of '0: a' lines"


def read_yaml_names(path: Path) -> list[str]:
    """The ``names:`` entry of a YOLO data.yaml, read without PyYAML (see the module docstring)."""
    lines = [_strip_comment(line).rstrip() for line in _read_text(path).splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("names:")), None)
    if start is None:
        raise DataError(f"{path} has no top-level 'names:' entry; accepted forms: {_YAML_FORMS}")
    inline = lines[start][len("names:") :].strip()
    if inline:
        # A flow list or mapping may continue over several lines until its closing bracket.
        closing = {"[": "]", "{": "}"}.get(inline[0])
        i = start
        while closing and not inline.endswith(closing) and i + 1 < len(lines):
            i += 1
            inline += " " + lines[i].strip()
        if closing is None or not inline.endswith(closing):
            raise DataError(f"{path}: cannot read 'names: {inline}'; accepted forms: {_YAML_FORMS}")
        items = [item.strip() for item in _split_flow(inline[1:-1], path) if item.strip()]
        entries = [_split_key(item, path) for item in items] if closing == "}" else [(None, i) for i in items]
    else:
        entries = []
        for line in lines[start + 1 :]:
            if not line.strip():
                continue
            if not line[0].isspace() and not line.startswith("-"):
                break  # the next top-level key
            item = line.strip()
            entries.append((None, item[1:].strip()) if item.startswith("-") else _split_key(item, path))
    names = _names_from_entries(entries, path)
    _check_unique(names, path)
    return names


def _names_from_entries(entries: list[tuple[str | None, str]], path: Path) -> list[str]:
    if not entries:
        raise DataError(f"{path}: 'names:' lists no classes; accepted forms: {_YAML_FORMS}")
    keyed = [key is not None for key, _ in entries]
    if any(keyed) and not all(keyed):
        raise DataError(f"{path}: 'names:' mixes '- a' and '0: a' entries; accepted forms: {_YAML_FORMS}")
    values = [_unquote(v) for _, v in entries]
    if not all(keyed):
        return values
    try:
        keys = [int(_unquote(k)) for k, _ in entries]
    except ValueError:
        raise DataError(f"{path}: 'names:' mapping keys must be class indices 0, 1, 2, ...") from None
    if sorted(keys) != list(range(len(keys))):
        raise DataError(f"{path}: 'names:' keys must be 0..{len(keys) - 1} with none missing, got {sorted(keys)}")
    return [name for _, name in sorted(zip(keys, values, strict=True))]


def _strip_comment(line: str) -> str:
    """Cut a YAML comment (``#`` at the start or after a space, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _split_flow(text: str, path: Path) -> list[str]:
    """Split ``a, 'b, c', d`` at the commas outside quotes."""
    items, current, quote = [], "", None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[]{}":
            raise DataError(f"{path}: nested lists or mappings in 'names:' are not supported; accepted: {_YAML_FORMS}")
        elif ch == ",":
            items.append(current)
            current = ""
            continue
        current += ch
    if quote:
        raise DataError(f"{path}: unclosed quote in 'names:'")
    return [*items, current]


def _split_key(item: str, path: Path) -> tuple[str, str]:
    key, sep, value = item.partition(":")
    if not sep or not key.strip():
        raise DataError(f"{path}: cannot read {item!r} under 'names:'; accepted forms: {_YAML_FORMS}")
    return key.strip(), value.strip()


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _check_unique(names: list[str], path: Path) -> None:
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise DataError(f"{path}: class name(s) {sorted(seen)} appear more than once; each class needs its own name")
    if any(not n for n in names):
        raise DataError(f"{path}: an empty class name; every class needs a name")

"""Class names and colours of a segmentation set: ``labelmap.txt``, ``classes.txt``, ``data.yaml``, VOC's own.

A mask pixel holds a class index into these names; 255 is "ignore" (VOC's object borders, unlabelled pixels).
``labelmap.txt`` comes in two forms: CVAT / Datumaro's ``name:r,g,b::`` lines (the colours also let RGB masks be
read) or one name per line, like ``classes.txt``. ``data.yaml`` gives a ``names:`` list (Ultralytics' form).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeres.data.palette import voc_palette
from edgeres.errors import DataError

IGNORE = 255  # mask value that is no class: not trained on, not scored
IGNORE_COLOR = (224, 224, 192)  # VOC's colour for its 255 "void" border pixels (RGB)
CLASS_FILES = ("labelmap.txt", "classes.txt", "data.yaml", "dataset.yaml")
VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
MAX_CLASSES = 255  # class indices fit in a uint8 mask beside the 255 "ignore"


@dataclass(frozen=True)
class ClassMap:
    """Class names, their RGB colours when a file gave them, and the file they came from.

    Attributes:
        names: class index -> name.
        colors: class index -> (r, g, b) as ``labelmap.txt`` gives them, or None (names only).
        source: the file read, or "Pascal VOC's 21 classes" when the VOC layout came without one.
    """

    names: list[str]
    colors: list[tuple[int, int, int]] | None
    source: str


def find_class_map(folders: list[Path], voc_default: bool = False) -> ClassMap:
    """The first class file found in ``folders`` (in order), or VOC's 21 classes for the VOC layout.

    Raises:
        DataError: no class file (and not VOC), or one that cannot be read as a list of unique names.
    """
    for folder in folders:
        for name in CLASS_FILES:
            path = Path(folder) / name
            if path.is_file():
                return read_class_file(path)
    if voc_default:
        return ClassMap(
            list(VOC_CLASSES), [tuple(int(v) for v in c) for c in voc_palette(21)], "Pascal VOC's 21 classes"
        )
    where = " or ".join(str(f) for f in dict.fromkeys(Path(f) for f in folders))
    raise DataError(
        f"no class names for the segmentation set in {where}: expected labelmap.txt ('name:r,g,b::' "
        "lines or one name per line), classes.txt (one name per line) or data.yaml ('names:' list)"
    )


def read_class_file(path: Path) -> ClassMap:
    """Read ``labelmap.txt``, ``classes.txt`` or ``data.yaml`` (by its name)."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        from edgeres.data.yolo import read_yaml_names  # one reader of YOLO/Ultralytics names: lists

        names, colors = read_yaml_names(path), None
    else:
        names, colors = _read_lines(path)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"{path} names a class more than once: {', '.join(dup[:5])}")
    if len(names) > MAX_CLASSES:
        raise DataError(f"{path} names {len(names)} classes; masks hold at most {MAX_CLASSES} (0..254, 255 = ignore)")
    return ClassMap(names, colors, str(path))


def _read_lines(path: Path) -> tuple[list[str], list[tuple[int, int, int]] | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read class names from {path}: {getattr(exc, 'strerror', None) or exc}") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise DataError(f"{path} lists no class names; expected 'name:r,g,b::' lines or one name per line")
    coloured = [":" in line for _, line in lines]
    if any(coloured) and not all(coloured):
        raise DataError(f"{path} mixes 'name:r,g,b::' lines with plain names; use one form")
    if not any(coloured):
        return [line for _, line in lines], None
    names, colors = [], []
    for n, line in lines:
        name, _, rest = line.partition(":")
        rgb = rest.split(":", 1)[0].split(",")
        try:
            color = tuple(int(v) for v in rgb)
        except ValueError:
            color = ()
        if not name.strip() or len(color) != 3 or not all(0 <= v <= 255 for v in color):
            raise DataError(f"{path} line {n}: '{line}' is not 'name:r,g,b::' with r, g, b in 0..255")
        names.append(name.strip())
        colors.append(color)
    if len(set(colors)) != len(colors):
        raise DataError(f"{path} gives two classes one colour; each class needs its own to read RGB masks")
    return names, colors

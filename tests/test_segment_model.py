"""Segmenter models: stride-4 output, torchvision FCN/DeepLabV3 wrappers, --init-from, architecture names, sizes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgeres.errors import EdgeresError
from edgeres.tasks import get_task

torch = pytest.importorskip("torch")

TASK = get_task("segment")


def test_seg_resnet_gives_stride4_logits_and_torchvision_wrappers_full_size():
    from edgeres.models.registry import get_model

    with torch.no_grad():
        assert get_model("seg_resnet18", 11).eval()(torch.zeros(1, 3, 64, 96)).shape == (1, 11, 16, 24)
        assert get_model("fcn_resnet50", 3).eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
        assert get_model("deeplabv3_resnet50", 3).eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_arch_names_and_input_sizes():
    assert TASK.resolve_arch("resnet34") == "seg_resnet34" and TASK.resolve_arch("fcn_resnet101") == "fcn_resnet101"
    with pytest.raises(EdgeresError, match="'centernet_resnet18' is a detect model, not a segmenter; segmenters: "):
        TASK.resolve_arch("centernet_resnet18")
    with pytest.raises(EdgeresError, match="unknown architecture 'unet'"):
        TASK.resolve_arch("unet")
    TASK.check_input_size((128, 96))
    with pytest.raises(EdgeresError, match="--img-size 100 must be a multiple of 32"):
        TASK.check_input_size((100, 100))


def _save(path, arch, task, classes=("a", "b")):
    from edgeres.config import ModelConfig, PreprocessConfig
    from edgeres.models.checkpoint import save_checkpoint
    from edgeres.models.registry import get_model

    torch.manual_seed(1)
    model = get_model(arch, num_classes=len(classes))
    save_checkpoint(path, model, ModelConfig(arch, list(classes), task=task, preprocess=PreprocessConfig((64, 64))))
    return model


def _cfg(arch, init_from):
    return SimpleNamespace(arch=arch, weights=None, init_from=init_from)


def test_init_from_classifier_detector_and_segmenter(tmp_path):
    classifier = _save(tmp_path / "cls.safetensors", "resnet18", "classify")
    seg = TASK.init_model(_cfg("seg_resnet18", tmp_path / "cls.safetensors"), ["bg", "x", "y"])
    assert torch.equal(seg.backbone.layer3[0].conv1.weight, classifier.layer3[0].conv1.weight)
    detector = _save(tmp_path / "det.safetensors", "centernet_resnet18", "detect")
    seg = TASK.init_model(_cfg("seg_resnet18", tmp_path / "det.safetensors"), ["bg", "x", "y"])
    assert torch.equal(seg.backbone.layer1[0].conv2.weight, detector.backbone.layer1[0].conv2.weight)
    own = _save(tmp_path / "seg.safetensors", "seg_resnet18", "segment", classes=("bg", "x"))
    again = TASK.init_model(_cfg("seg_resnet18", tmp_path / "seg.safetensors"), ["bg", "x", "y"])  # new classes
    assert torch.equal(again.smooth[0][0].weight, own.smooth[0][0].weight)
    assert again.classifier.weight.shape[0] == 3
    fcn = TASK.init_model(_cfg("fcn_resnet50", None), ["bg", "x"])
    assert fcn.model.backbone.layer1[0].conv1.weight.shape[0] == 64


def test_init_from_wrong_backbone_or_task_is_one_line(tmp_path):
    _save(tmp_path / "cls.safetensors", "resnet18", "classify")
    with pytest.raises(EdgeresError, match="is a resnet18 classify model; seg_resnet34 needs a resnet34 backbone"):
        TASK.init_model(_cfg("seg_resnet34", tmp_path / "cls.safetensors"), ["bg", "x"])
    _save(tmp_path / "seg.safetensors", "seg_resnet18", "segment")
    from edgeres.tasks.classify import model as classify_model

    with pytest.raises(EdgeresError, match="is a segment model, but a classify model is required"):
        cfg = SimpleNamespace(arch="resnet18", weights=None, init_from=tmp_path / "seg.safetensors")
        classify_model.init_model(cfg, ["a", "b"])


def test_loss_ignores_255_and_upsamples_logits():
    loss = TASK.make_loss(0.0)
    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)
    mask = torch.full((1, 16, 16), 255, dtype=torch.long)
    mask[0, :8] = 1
    value, _ = loss(logits, (mask,))
    assert value.item() == pytest.approx(float(torch.log(torch.tensor(2.0))))  # uniform logits, ignored pixels out
    value.backward()
    all_ignored, _ = loss(logits, (torch.full((1, 16, 16), 255, dtype=torch.long),))
    assert all_ignored.item() == 0.0

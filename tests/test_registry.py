"""The model registry: names, errors, heads and input sizes, and where ImageNet weights come from."""

from __future__ import annotations

import pytest
import torch
import torchvision

from edgeres.errors import CheckpointError, EdgeresError
from edgeres.models import registry
from edgeres.models.registry import get_model, list_models, model_task, register_model

RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def test_list_models_has_every_resnet():
    assert set(RESNETS) <= set(list_models())
    assert set(RESNETS) <= set(list_models("classify"))
    assert list_models() == sorted(list_models())
    assert not set(RESNETS) & set(list_models("detect"))
    assert model_task("resnet50") == "classify"


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(EdgeresError) as err:
        get_model("resnet19", num_classes=3)
    message = str(err.value)
    assert "unknown architecture 'resnet19'" in message
    assert all(name in message for name in RESNETS)


def test_duplicate_registration_is_refused_and_keeps_the_original():
    original = registry._BUILDERS["resnet18"]
    with pytest.raises(ValueError, match="'resnet18' is already registered"):
        register_model("resnet18")(lambda num_classes, weights=None: None)
    assert registry._BUILDERS["resnet18"] is original


def test_a_new_registration_is_listed_and_built(monkeypatch):
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))

    @register_model("tiny_test_net", task="detect")
    def tiny(num_classes, weights=None):
        return torch.nn.Linear(4, num_classes)

    assert "tiny_test_net" in list_models("detect") and "tiny_test_net" not in list_models("classify")
    assert get_model("tiny_test_net", num_classes=6).out_features == 6


def test_num_classes_zero_is_an_error():
    with pytest.raises(EdgeresError, match="num_classes must be at least 1, got 0"):
        get_model("resnet18", num_classes=0)


@pytest.mark.parametrize(("arch", "features"), [("resnet18", 512), ("resnet50", 2048)])
def test_head_size_and_any_input_size(arch, features):
    model = get_model(arch, num_classes=7)
    assert model.training  # built in train mode
    assert (model.fc.in_features, model.fc.out_features) == (features, 7)
    model.eval()
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 48, 48)).shape == (1, 7)
        assert model(torch.zeros(2, 3, 64, 40)).shape == (2, 7)


def test_imagenet_offline_says_how_to_provide_a_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no cached download can help
    try:
        model = get_model("resnet18", num_classes=3, weights="imagenet")
    except EdgeresError as exc:
        message = str(exc)
    else:  # a connected machine: the download worked, and the backbone must then be ImageNet's
        assert model.fc.out_features == 3
        pytest.skip("this machine could download the ImageNet weights; the offline message cannot be shown")
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    assert "could not download ImageNet weights for resnet18" in message
    assert url in message  # where to get the file
    assert f"--weights ./{url.rsplit('/', 1)[1]}" in message  # how to pass it
    assert "\n" not in message


def test_weights_from_a_local_torchvision_file_keep_the_backbone_and_drop_the_1000_class_head(tmp_path):
    torch.manual_seed(0)
    imagenet_like = torchvision.models.resnet18(num_classes=1000).state_dict()
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(imagenet_like, path)
    model = get_model("resnet18", num_classes=3, weights=str(path))
    own = model.state_dict()
    for key, value in imagenet_like.items():
        if key.startswith("fc."):
            assert own[key].shape[0] == 3
        else:
            assert torch.equal(own[key], value), key

    kept = get_model("resnet18", num_classes=1000, weights=str(path))  # 1000 classes: the head is kept too
    assert torch.equal(kept.fc.weight, imagenet_like["fc.weight"])


def test_weights_of_another_architecture_do_not_fit(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(num_classes=1000).state_dict(), path)
    with pytest.raises(CheckpointError, match="do not fit resnet18"):
        get_model("resnet18", num_classes=3, weights=str(path))

"""A registry of model builders by name, after torchvision's and timm's.

``get_model("resnet18", num_classes=10)`` builds a torchvision ResNet with a new head. Weights are
random unless ``weights`` names ImageNet weights (downloaded by torchvision) or a local file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgeres.errors import CheckpointError, EdgeresError, require

_BUILDERS: dict[str, Callable] = {}
_TASKS: dict[str, str] = {}


def register_model(name: str, task: str = "classify") -> Callable:
    """Decorator registering ``fn(num_classes, **cfg) -> torch.nn.Module`` under ``name``."""

    def wrap(fn: Callable) -> Callable:
        if name in _BUILDERS:
            raise ValueError(f"model '{name}' is already registered")
        _BUILDERS[name] = fn
        _TASKS[name] = task
        return fn

    return wrap


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, optionally only those of one task ("classify" or "detect")."""
    return sorted(n for n in _BUILDERS if task is None or _TASKS[n] == task)


def model_task(name: str) -> str:
    check_arch(name)
    return _TASKS[name]


def check_arch(name: str) -> None:
    if name not in _BUILDERS:
        raise EdgeresError(f"unknown architecture '{name}'; available: {', '.join(list_models())}")


def get_model(name: str, num_classes: int, weights: str | None = None, **cfg):
    """Build a registered model.

    Args:
        name: registered architecture, e.g. "resnet18".
        num_classes: size of the classification head.
        weights: None (random), "imagenet" (torchvision's weights, downloaded when online) or the
            path of a local ``.pth`` file holding torchvision's ImageNet state dict.
        cfg: extra builder options.

    Returns:
        A ``torch.nn.Module`` in train mode.
    """
    check_arch(name)
    if num_classes < 1:
        raise EdgeresError(f"num_classes must be at least 1, got {num_classes}")
    return _BUILDERS[name](num_classes=num_classes, weights=weights, **cfg)


def _resnet_builder(arch: str) -> Callable:
    def build(num_classes: int, weights: str | None = None):
        tv = require("torchvision", "desktop")
        model = getattr(tv.models, arch)(weights=None, num_classes=num_classes)
        if weights:
            state = _imagenet_state_dict(arch, weights)
            # The ImageNet head has 1000 outputs; keep it only when the class count matches.
            if num_classes != 1000:
                state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or any(not k.startswith("fc.") for k in missing):
                raise CheckpointError(
                    f"weights '{weights}' do not fit {arch}: missing {missing[:3]}, unexpected {unexpected[:3]}"
                )
        return model

    return build


def _imagenet_state_dict(arch: str, weights: str) -> dict:
    tv = require("torchvision", "desktop")
    enum = tv.models.get_model_weights(arch).IMAGENET1K_V1
    if weights != "imagenet":
        from edgeres.models.checkpoint import load_state_dict_file

        return load_state_dict_file(Path(weights))
    try:
        return enum.get_state_dict(progress=False)
    except Exception as exc:  # urllib raises several types when offline
        raise EdgeresError(
            f"could not download ImageNet weights for {arch} ({type(exc).__name__}); on a connected machine "
            f"download {enum.url} and pass its path instead of 'imagenet' (e.g. --weights ./{Path(enum.url).name})"
        ) from None


for _arch in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
    register_model(_arch)(_resnet_builder(_arch))


def _centernet_builder(arch: str) -> Callable:
    def build(num_classes: int, weights: str | None = None):
        from edgeres.models.centernet import build_centernet

        return build_centernet(arch, num_classes, weights)

    return build


for _arch in ("resnet18", "resnet34", "resnet50"):
    register_model(f"centernet_{_arch}", task="detect")(_centernet_builder(_arch))


def _segmenter_builder(arch: str) -> Callable:
    def build(num_classes: int, weights: str | None = None):
        from edgeres.models.segmenter import TORCHVISION_SEGMENTERS, build_segmenter, build_torchvision_segmenter

        if arch in TORCHVISION_SEGMENTERS:
            return build_torchvision_segmenter(arch, num_classes, weights)
        return build_segmenter(arch.removeprefix("seg_"), num_classes, weights)

    return build


for _arch in ("seg_resnet18", "seg_resnet34", "seg_resnet50", "fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50",
              "deeplabv3_resnet101"):
    register_model(_arch, task="segment")(_segmenter_builder(_arch))

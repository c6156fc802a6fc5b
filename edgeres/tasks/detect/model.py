"""The detector to train: CenterNet on a torchvision ResNet, random, ImageNet backbone or transferred."""

from __future__ import annotations

from edgeres.errors import EdgeresError


def resolve_arch(arch: str) -> str:
    """``--task detect --arch resnet18`` means the CenterNet detector on a ResNet-18."""
    from edgeres.models.registry import check_arch, model_task

    name = arch if arch.startswith("centernet_") else f"centernet_{arch}"
    check_arch(name)
    if model_task(name) != "detect":
        raise EdgeresError(f"'{arch}' is not a detector; detectors: centernet_resnet18/34/50")
    return name


def check_input_size(hw: tuple[int, int]) -> None:
    if hw[0] % 32 or hw[1] % 32:
        raise EdgeresError(f"--img-size {hw[0]} must be a multiple of 32 for a detector (stride-32 backbone)")


def is_frozen_parameter(name: str) -> bool:
    """--freeze-backbone trains only the neck and heads."""
    return name.startswith("backbone.")


def init_model(cfg, class_names: list[str]):
    """The detector to train: random, ImageNet backbone, or a backbone from an edgeres checkpoint."""
    from edgeres.models.centernet import backbone_state_from_classifier
    from edgeres.models.checkpoint import load_checkpoint, load_weights
    from edgeres.models.registry import get_model

    model = get_model(cfg.arch, num_classes=len(class_names), weights=cfg.weights)
    if cfg.init_from:
        ckpt = load_checkpoint(cfg.init_from)
        own = model.state_dict()
        if ckpt.config.task == "detect":  # this task's own checkpoints, or a classifier's backbone
            if ckpt.config.arch != cfg.arch:
                raise EdgeresError(f"--init-from {cfg.init_from} is a {ckpt.config.arch}, not a {cfg.arch}")
            state = dict(ckpt.state_dict)
            if ckpt.config.class_names != class_names:  # new classes: keep all but the class heatmap's last conv
                for k in ("heatmap.2.weight", "heatmap.2.bias"):
                    state[k] = own[k]
        elif ckpt.config.task == "classify":
            backbone = cfg.arch.removeprefix("centernet_")
            if ckpt.config.arch != backbone:
                raise EdgeresError(f"--init-from {cfg.init_from} is a {ckpt.config.arch} classifier; "
                                   f"{cfg.arch} needs a {backbone} backbone")
            state = {**own, **backbone_state_from_classifier(ckpt.state_dict)}
        else:
            raise EdgeresError(f"--init-from {cfg.init_from} is a {ckpt.config.task} model; a detector starts from "
                               "a detector or a classifier checkpoint")
        load_weights(model, state, cfg.arch, source=str(cfg.init_from))
    return model



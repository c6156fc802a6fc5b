"""The classifier to train: a registered torchvision ResNet, random, ImageNet-initialized or transferred."""

from __future__ import annotations

from edgeres.errors import EdgeresError


def resolve_arch(arch: str) -> str:
    from edgeres.models.registry import check_arch, model_task

    check_arch(arch)
    if model_task(arch) != "classify":
        raise EdgeresError(f"'{arch}' is a {model_task(arch)} model, not a classifier; classifiers: "
                           "resnet18, resnet34, resnet50, resnet101, resnet152")
    return arch


def is_frozen_parameter(name: str) -> bool:
    """--freeze-backbone trains only the classifier head (``fc``)."""
    return not name.startswith("fc.")


def init_model(cfg, class_names: list[str]):
    """Random, ``--weights`` (ImageNet) or ``--init-from`` an edgeres classifier (new classes: new head)."""
    from edgeres.models.checkpoint import load_checkpoint, load_weights
    from edgeres.models.registry import get_model
    from edgeres.tasks import require_task

    model = get_model(cfg.arch, num_classes=len(class_names), weights=cfg.weights)
    if cfg.init_from:
        ckpt = load_checkpoint(cfg.init_from)
        require_task(ckpt.config.task, "classify", f"--init-from {cfg.init_from}")
        if ckpt.config.arch != cfg.arch:
            raise EdgeresError(f"--init-from {cfg.init_from} is a {ckpt.config.arch}, not a {cfg.arch}")
        state = ckpt.state_dict
        if ckpt.config.class_names != class_names:  # new classes: keep the backbone, new head
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            state.update({k: v for k, v in model.state_dict().items() if k.startswith("fc.")})
        load_weights(model, state, cfg.arch, source=str(cfg.init_from))
    return model


def make_loss(label_smoothing: float = 0.0):
    """Cross-entropy; also counts correct top-1 predictions for the progress bar."""
    import torch

    criterion = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def loss(outputs, targets):
        (labels,) = targets
        return criterion(outputs, labels), {"correct": int((outputs.detach().argmax(1) == labels).sum())}

    return loss

"""The segmenter to train: random, ImageNet backbone, or a backbone from a classifier, detector or segmenter."""

from __future__ import annotations

from edgeres.errors import EdgeresError

STRIDE = 32  # the backbone's deepest stride: the top-down neck needs sizes that halve evenly five times


def resolve_arch(arch: str) -> str:
    """``--task segment --arch resnet18`` means edgeres' stride-4 segmenter on a ResNet-18 (``seg_resnet18``)."""
    from edgeres.models.registry import check_arch, list_models, model_task

    name = f"seg_{arch}" if arch.startswith("resnet") else arch
    if name not in list_models("segment"):
        check_arch(arch)  # an unknown name lists every model
        raise EdgeresError(
            f"'{arch}' is a {model_task(arch)} model, not a segmenter; segmenters: {', '.join(list_models('segment'))}"
        )
    return name


def check_input_size(hw: tuple[int, int]) -> None:
    if hw[0] < STRIDE or hw[1] < STRIDE or hw[0] % STRIDE or hw[1] % STRIDE:
        raise EdgeresError(
            f"--img-size {hw[0]} must be a multiple of {STRIDE} (at least {STRIDE}) for a segmenter "
            f"(its backbone's stride)"
        )


def _backbone_prefix(arch: str) -> str:
    from edgeres.models.segmenter import TORCHVISION_SEGMENTERS

    return "model.backbone." if arch in TORCHVISION_SEGMENTERS else "backbone."


def _backbone_arch(arch: str) -> str:
    return arch.removeprefix("seg_").removeprefix("fcn_").removeprefix("deeplabv3_")


def is_frozen_parameter(name: str) -> bool:
    """--freeze-backbone trains only the neck and the classifier head."""
    return name.startswith(("backbone.", "model.backbone."))


def init_model(cfg, class_names: list[str]):
    """Random, ``--weights`` (ImageNet backbone; a state-dict file for torchvision's segmenters), or ``--init-from``
    an edgeres segmenter (same arch; new classes: new classifier), a classifier or a detector (its backbone)."""
    from edgeres.models.checkpoint import load_checkpoint, load_weights
    from edgeres.models.registry import get_model

    model = get_model(cfg.arch, num_classes=len(class_names), weights=cfg.weights)
    if not cfg.init_from:
        return model
    ckpt = load_checkpoint(cfg.init_from)
    own = model.state_dict()
    found = ckpt.config.task
    if found == "segment":
        if ckpt.config.arch != cfg.arch:
            raise EdgeresError(f"--init-from {cfg.init_from} is a {ckpt.config.arch}, not a {cfg.arch}")
        state = dict(ckpt.state_dict)
        if ckpt.config.class_names != class_names:  # new classes: all but the last 1x1 classifier
            for k in own:
                if k.startswith(("classifier.", "model.classifier.4.")):
                    state[k] = own[k]
    elif found in ("classify", "detect"):
        from edgeres.models.segmenter import backbone_state

        wanted = _backbone_arch(cfg.arch)
        given = ckpt.config.arch.removeprefix("centernet_")
        if given != wanted:
            raise EdgeresError(
                f"--init-from {cfg.init_from} is a {ckpt.config.arch} {found} model; {cfg.arch} needs "
                f"a {wanted} backbone"
            )
        theirs = backbone_state(ckpt.state_dict)
        prefix = _backbone_prefix(cfg.arch)
        theirs = {
            prefix + k.removeprefix("backbone."): v
            for k, v in theirs.items()
            if prefix + k.removeprefix("backbone.") in own
        }
        state = {**own, **theirs}
    else:
        raise EdgeresError(
            f"--init-from {cfg.init_from} is a {found} model; a segmenter starts from a segmenter, "
            "classifier or detector checkpoint"
        )
    load_weights(model, state, cfg.arch, source=str(cfg.init_from))
    return model


def make_loss(label_smoothing: float = 0.0):
    """Per-pixel cross-entropy at the mask's (network input) size, 255 ignored; the logits are upsampled
    bilinearly first, as decoding does, so training optimises the map users get."""
    import torch
    import torch.nn.functional as F

    from edgeres.tasks.segment.classes import IGNORE

    def loss(outputs, targets):
        (mask,) = targets
        logits = outputs.float()
        if logits.shape[-2:] != mask.shape[-2:]:
            logits = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)
        value = F.cross_entropy(logits, mask, ignore_index=IGNORE, label_smoothing=label_smoothing)
        if not torch.isfinite(value):  # every pixel of the batch ignored: nothing to learn from
            value = logits.sum() * 0.0
        return value, {}

    return loss

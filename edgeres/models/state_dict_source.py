"""Torchvision-layout state dicts (``.pth``/``.pt``/``.bin``, bare ``.safetensors``): checked against the registered
architectures on the meta device, so a mismatch names what is missing and what the keys do fit."""

from __future__ import annotations

from pathlib import Path

from edgeres.config import ModelConfig
from edgeres.errors import CheckpointError, require
from edgeres.models.sources import (
    DEFAULT_IMG_SIZE,
    ModelRequest,
    ResolvedModel,
    cache_key,
    check_out_suffix,
    class_names_for,
    classifiers,
    preprocess_for,
    target_path,
)


def _architecture_shapes(arch: str, num_classes: int) -> dict:
    """Parameter names and shapes of a registered classifier, built on the meta device (no memory, no time)."""
    torch = require("torch", "desktop")
    from edgeres.models.registry import get_model

    with torch.device("meta"):
        model = get_model(arch, num_classes=num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def fitting_architectures(state: dict) -> list[str]:
    """The registered classifiers whose parameter names and shapes ``state`` matches exactly."""
    from edgeres.models.registry import list_models

    head = state.get("fc.weight")
    if head is None or len(getattr(head, "shape", ())) != 2:
        return []
    return [arch for arch in list_models("classify") if _fits(state, _architecture_shapes(arch, int(head.shape[0])))]


def _fits(state: dict, own: dict) -> bool:
    """Same names and shapes; BatchNorm's ``num_batches_tracked`` may be absent (older torchvision files lack it and
    BatchNorm fills it in when loading)."""
    given = {k: tuple(v.shape) for k, v in state.items()}
    needed = {k: v for k, v in own.items() if k in given or not k.endswith("num_batches_tracked")}
    return given == needed


def with_batchnorm_counters(state: dict, model) -> dict:
    """``state`` with BatchNorm's ``num_batches_tracked`` counters added where it lacks them (files saved before
    PyTorch 0.4.1 and some converters omit them; BatchNorm in eval mode never reads them)."""
    own = model.state_dict()
    missing = {k: own[k].clone() for k in own if k.endswith("num_batches_tracked") and k not in state}
    return {**state, **missing}


def describe_mismatch(state: dict, arch: str, where: str) -> str:
    """One line: which keys of ``state`` are missing/unexpected/other-shaped for ``arch``, and what it does fit."""
    head = state.get("fc.weight")
    classes = int(head.shape[0]) if head is not None and len(head.shape) == 2 else 1
    own = _architecture_shapes(arch, classes)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {own[k]}" for k in own if k in state and tuple(state[k].shape) != own[k]]
    detail = []
    if missing:
        detail.append(f"{len(missing)} missing (e.g. {', '.join(missing[:2])})")
    if unexpected:
        detail.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:2])})")
    if wrong:
        detail.append(f"{len(wrong)} with other shapes (e.g. {wrong[0]})")
    fits = fitting_architectures(state)
    if fits:
        hint = f"its keys fit {' and '.join(fits)} (--arch {fits[0]})"
    elif any(k.startswith("backbone.") for k in state):
        hint = "it looks like an edgeres detector's weights, which need the edgeres checkpoint they were saved in"
    else:
        hint = "they fit no registered architecture (" + ", ".join(classifiers()) + ")"
    return f"{where} does not fit {arch} with {classes} classes: " + "; ".join(detail) + f"; {hint}"


def from_state_dict(request: ModelRequest, path: Path, out: Path | None, force: bool) -> ResolvedModel:
    from edgeres.models.checkpoint import file_sha256, load_weights, read_state_dict_file, save_checkpoint
    from edgeres.models.registry import check_arch, get_model

    state, notes = read_state_dict_file(path)
    if request.arch is None:
        fits = fitting_architectures(state) if "fc.weight" in state else []
        hint = (
            f"its keys fit {' and '.join(fits)} (--arch {fits[0]})" if fits else f"accepted: {', '.join(classifiers())}"
        )
        raise CheckpointError(
            f"{path} is a state dict without edgeres metadata; say which architecture it is with --arch: {hint}"
        )
    check_arch(request.arch)
    if request.arch not in classifiers():
        raise CheckpointError(
            f"--arch {request.arch} is a detector; state dicts from elsewhere are classifiers "
            f"({', '.join(classifiers())})"
        )
    head = state.get("fc.weight")
    if head is None or len(head.shape) != 2:
        raise CheckpointError(
            describe_mismatch(state, request.arch, str(path)) if state else f"{path} holds no tensors"
        )
    if not _fits(state, _architecture_shapes(request.arch, int(head.shape[0]))):
        raise CheckpointError(describe_mismatch(state, request.arch, str(path)))
    names, class_origin = class_names_for(request, int(head.shape[0]), str(path), "the fc layer's size")
    pre, origins = preprocess_for(request, None, f"the default {DEFAULT_IMG_SIZE} (torchvision's ImageNet size)")
    config = ModelConfig(arch=request.arch, class_names=names, preprocess=pre)
    origins |= {"arch": "--arch", "classes": class_origin}
    sha = file_sha256(path)
    target = target_path(out, path.stem, cache_key(sha, config.to_dict()), ".safetensors")
    if out is not None:
        check_out_suffix(out, ".safetensors", path)
    if out is not None or not target.is_file():
        model = get_model(request.arch, num_classes=len(names))
        # the checks every checkpoint load makes
        load_weights(model, with_batchnorm_counters(state, model), request.arch, source=str(path))
        summary = {
            "imported_from": {
                "kind": "state_dict",
                "file": str(path.resolve()),
                "sha256": sha,
                "origins": origins,
                "notes": notes,
            }
        }
        save_checkpoint(target, model, config, summary=summary, force=force if out is not None else True)
    return ResolvedModel(path=target, config=config, kind="state_dict", source=str(path), origins=origins, notes=notes)

"""torchvision's pretrained weights by name, downloaded into (and read from) torchvision's own cache, with the class
names and pre-processing from the weights' metadata."""

from __future__ import annotations

from pathlib import Path

from edgeres.config import ModelConfig
from edgeres.errors import EdgeresError, require
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


def torchvision_weights(arch: str, name: str):
    """torchvision's weights enum member for ``arch`` named ``name`` ("imagenet"/"default" mean DEFAULT)."""
    tv = require("torchvision", "desktop")
    try:
        enum = tv.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise EdgeresError(f"torchvision has no pretrained weights for '{arch}'") from None
    members = [w.name for w in enum]
    key = name.split(".")[-1]
    if key.lower() in ("imagenet", "default"):
        return enum.DEFAULT
    try:
        return enum[key.upper()]
    except KeyError:
        raise EdgeresError(
            f"unknown weights '{name}' for {arch}; accepted: imagenet (torchvision's DEFAULT, "
            f"{enum.DEFAULT.name}), {', '.join(members)}"
        ) from None


def download_weights(weights, arch: str, progress: bool = False) -> Path:
    """The weights file in torchvision's own cache (``torch.hub.get_dir()/checkpoints``), downloaded when absent.

    torch.hub prints a "Downloading" line before it tries; this checks the cache first and downloads quietly, so
    offline the only output is one error line.
    """
    torch = require("torch", "desktop")
    import re

    url = weights.url
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    found = re.search(r"-([a-f0-9]*)\.", Path(url).name)  # torch.hub's hash-prefix convention
    try:
        torch.hub.download_url_to_file(
            url, str(target), hash_prefix=found.group(1) if found else None, progress=progress
        )
    except Exception as exc:  # URLError, socket errors, a hash mismatch...
        reason = str(getattr(exc, "reason", "") or exc).strip().splitlines()
        raise EdgeresError(
            f"could not download torchvision's {weights} ({type(exc).__name__}: {reason[0][:100] if reason else ''}); "
            f"offline, put {url} (downloaded elsewhere) at {target}, or import them on a connected machine with "
            f"'edgeres import --weights {weights.name} --arch {arch} --out {arch}.safetensors' and copy that file"
        ) from None
    return target


def from_torchvision(request: ModelRequest, out: Path | None, force: bool) -> ResolvedModel:
    from edgeres.models.checkpoint import file_sha256, load_state_dict_file, load_weights, save_checkpoint
    from edgeres.models.registry import check_arch, get_model
    from edgeres.models.state_dict_source import with_batchnorm_counters

    if request.arch is None:
        raise EdgeresError(f"--weights {request.weights} needs --arch (e.g. --arch resnet50)")
    check_arch(request.arch)
    if request.arch not in classifiers():
        raise EdgeresError(
            f"--weights loads torchvision classifiers ({', '.join(classifiers())}); for a detector "
            "train with 'edgeres train --task detect --weights imagenet'"
        )
    weights = torchvision_weights(request.arch, request.weights)
    meta = weights.meta
    categories = list(meta.get("categories") or [])
    where = f"torchvision's {weights}"
    names, class_origin = categories, f"{where} metadata"
    if request.classes is not None or request.num_classes is not None:
        own, class_origin = class_names_for(request, len(categories), where, "")
        names = own if request.classes is not None else categories
    transform = weights.transforms()
    crop = int(getattr(transform, "crop_size", [DEFAULT_IMG_SIZE])[0])
    resize = int(getattr(transform, "resize_size", [crop])[0])
    size_origin = (
        f"{where} metadata (torchvision resizes to {resize} and centre-crops {crop}; edgeres resizes "
        f"the whole frame to {crop})"
    )
    pre, origins = preprocess_for(
        request, (crop, crop), size_origin, tuple(transform.mean), tuple(transform.std), f"{where} metadata"
    )
    config = ModelConfig(arch=request.arch, class_names=names, preprocess=pre)
    origins |= {"arch": "--arch", "classes": class_origin}
    if out is not None:
        check_out_suffix(out, ".safetensors", str(weights))
    target = target_path(
        out, f"{request.arch}-{weights.name.lower()}", cache_key(weights.url, config.to_dict()), ".safetensors"
    )
    if out is not None or not target.is_file():
        file = download_weights(weights, request.arch)
        model = get_model(request.arch, num_classes=len(categories))
        state = with_batchnorm_counters(load_state_dict_file(file), model)
        load_weights(model, state, request.arch, source=str(file))
        summary = {
            "imported_from": {
                "kind": "torchvision",
                "weights": str(weights),
                "url": weights.url,
                "file": str(file),
                "sha256": file_sha256(file),
                "origins": origins,
                "metrics": meta.get("_metrics"),
            }
        }
        save_checkpoint(target, model, config, summary=summary, force=force if out is not None else True)
    return ResolvedModel(path=target, config=config, kind="torchvision", source=str(weights), origins=origins)

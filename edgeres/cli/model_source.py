"""The options that describe where a model comes from, defined once for every command that takes a model.

``@model_options`` adds ``--weights``, ``--arch``, ``--classes``, ``--num-classes``, ``--img-size``, ``--mean`` and
``--std`` to a command; the command receives them, with its own ``--model``, as one ``ModelRequest`` in its
``request`` parameter, and calls ``resolve_for_command`` to get a model every library function reads.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import typer

# name -> (type, option); typer reads these types at run time.
_OPTIONS = {
    "weights": (
        str | None,
        typer.Option(
            None,
            "--weights",
            help="torchvision's pretrained weights instead of --model: imagenet (torchvision's "
            "DEFAULT) or an enum name such as IMAGENET1K_V2; needs --arch.",
        ),
    ),
    "arch": (
        str | None,
        typer.Option(
            None, "--arch", help="Architecture of a state dict without edgeres metadata (resnet18, resnet50...)."
        ),
    ),
    "classes": (
        Path | None,
        typer.Option(
            None, "--classes", help="Class names of a state dict or ONNX model: a text file, one name per line."
        ),
    ),
    "num_classes": (
        int | None,
        typer.Option(
            None, "--num-classes", min=1, help="Or just the class count (names 0..N-1); must match the model."
        ),
    ),
    "img_size": (
        str | None,
        typer.Option(None, "--img-size", help="Input size of a state dict (or a dynamic-size ONNX): 224 or HxW [224]."),
    ),
    "mean": (
        str | None,
        typer.Option(
            None, "--mean", help="Normalization mean R,G,B on the [0, 1] scale [ImageNet: 0.485,0.456,0.406]."
        ),
    ),
    "std": (
        str | None,
        typer.Option(None, "--std", help="Normalization std R,G,B on the [0, 1] scale [ImageNet: 0.229,0.224,0.225]."),
    ),
}


def model_options(command):
    """Decorator: add the model-source options to ``command`` and hand them over as ``request: ModelRequest``.

    The command keeps its own ``--model`` option (help texts differ between commands); it must have a
    ``request`` parameter, which is hidden from the command line.
    """
    signature = inspect.signature(command)
    if "request" not in signature.parameters or "model" not in signature.parameters:
        raise TypeError(f"{command.__name__} needs 'model' and 'request' parameters to take model options")
    own = [p for p in signature.parameters.values() if p.name != "request"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
        for name, (kind, option) in _OPTIONS.items()
    ]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        values = {name: kwargs.pop(name, None) for name in _OPTIONS}
        kwargs["request"] = make_request(kwargs.get("model"), **values)
        return command(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + added)
    annotations = {k: v for k, v in getattr(command, "__annotations__", {}).items() if k != "request"}
    wrapper.__annotations__ = annotations | {name: kind for name, (kind, _) in _OPTIONS.items()}
    return wrapper


def make_request(
    model: Path | None,
    weights: str | None = None,
    arch: str | None = None,
    classes: Path | None = None,
    num_classes: int | None = None,
    img_size: str | None = None,
    mean: str | None = None,
    std: str | None = None,
):
    """A ``ModelRequest`` from the options' raw values (sizes and channel values parsed and checked here)."""
    from edgeres.models.sources import ModelRequest, parse_channels, parse_img_size

    return ModelRequest(
        model=Path(model) if model is not None else None,
        weights=weights,
        arch=arch,
        classes=classes,
        num_classes=num_classes,
        img_size=parse_img_size(img_size) if img_size is not None else None,
        mean=parse_channels(mean, "--mean") if mean is not None else None,
        std=parse_channels(std, "--std") if std is not None else None,
    )


def resolve_for_command(
    request,
    workspace_default: bool = True,
    quiet: bool = False,
    needs_torch: str | None = None,
    out: Path | None = None,
    force: bool = False,
):
    """The model a command works on: what ``request`` names, else the workspace's model; a foreign source is
    converted (once, into the cache) and what was read is printed on stderr.

    Args:
        request: the command's ``ModelRequest``.
        workspace_default: fall back to the workspace's model when nothing names one.
        quiet: don't print the summary.
        needs_torch: the step's name when it needs torch weights (an ONNX model is refused, before any summary).
        out, force: write the converted model there (``resolve_model``'s ``out``), overwriting only with force.

    Returns:
        A ``ResolvedModel``.
    """
    from dataclasses import replace

    from edgeres.cli.console import make_console
    from edgeres.models.sources import resolve_model
    from edgeres.workspace import model_or_workspace_default

    if not request.given:
        if not workspace_default:
            from edgeres.errors import EdgeresError

            raise EdgeresError("no model given: pass --model FILE or --weights NAME --arch ARCH")
        request = replace(request, model=model_or_workspace_default(None))
    resolved = resolve_model(request, out=out, force=force)
    if needs_torch is not None:
        from edgeres.models.sources import require_torch_weights

        require_torch_weights(resolved, needs_torch)
    if resolved.foreign and not quiet:
        console = make_console(stderr=True)
        for line in resolved.describe():
            console.print(line, highlight=False, markup=False)
    return resolved

"""``edgeres import``: any model source -> an edgeres checkpoint (or, for ONNX, an edgeres ONNX), with a summary of
what was read and where each value came from."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeres.cli.model_source import model_options


@model_options
def import_model(
    model: Path = typer.Argument(
        None,
        help="A .pth/.pt state dict, bare .safetensors, an edgeres checkpoint or an "
        ".onnx classifier (or nothing, with --weights).",
    ),
    out: Path = typer.Option(..., "--out", help="Destination: NAME.safetensors (torch weights) or NAME.onnx."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT."),
    request=None,
) -> None:
    """Turn a model from elsewhere into an edgeres model file that every command reads without options."""
    from edgeres.cli.console import make_console
    from edgeres.models.sources import resolve_model

    resolved = resolve_model(request, out=out, force=force)
    console = make_console()
    for line in resolved.describe():
        console.print(line, highlight=False, markup=False)
    console.print(f"wrote {out}; use it with --model {out}", highlight=False, markup=False)

"""``edgeres export``: checkpoint -> verified ONNX."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from edgeres.cli.model_source import model_options


class Exporter(str, Enum):
    torchscript = "torchscript"
    dynamo = "dynamo"


@model_options
def export(
    model: Path = typer.Option(None, "--model", help="Checkpoint, .pth state dict or .onnx [default: the "
                               "workspace's model]."),
    out: Path = typer.Option(..., "--out", help="Destination .onnx file."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (TensorRT 8.6 parses up to 17; dynamo needs 18+)."),
    exporter: Exporter = typer.Option(Exporter.torchscript, "--exporter"),
    tolerance: float = typer.Option(1e-3, "--tolerance", help="Largest accepted |torch - ONNX Runtime| on logits."),
    uint8_input: bool = typer.Option(False, "--uint8-input", help="Put normalization inside the network."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT."),
    request=None,
) -> None:
    """Export ONNX with a dynamic batch axis, check it and verify it against torch on real images."""
    from edgeres.cli.console import make_console
    from edgeres.cli.model_source import resolve_for_command
    from edgeres.onnx_model.export import export_checkpoint

    result = export_checkpoint(resolve_for_command(request).path, out, opset=opset, exporter=exporter.value,
                               tolerance=tolerance, normalize_in_network=uint8_input, force=force)
    if result.exporter == "external":  # an ONNX model from elsewhere: nothing to compare with torch
        make_console().print(f"wrote {out} (the checked and cleaned ONNX model, opset {result.opset}); ONNX Runtime "
                             f"ran it on {result.verified_images} real images")
        return
    make_console().print(
        f"wrote {out} ({result.exporter} exporter, opset {result.opset}); ONNX Runtime vs torch on "
        f"{result.verified_images} real images: max abs diff {result.max_abs_diff:.2e} (tolerance {result.tolerance:g})"
    )

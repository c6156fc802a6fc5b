"""``edgeres calibrate``: real images -> scales JSON + Q/DQ ONNX (the INT8 artifact)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from edgeres.cli.model_source import model_options


class Method(str, Enum):
    entropy = "entropy"
    minmax = "minmax"
    percentile = "percentile"
    mse = "mse"


@model_options
def calibrate(
    model: Path = typer.Option(None, "--model", help="Checkpoint, .pth state dict or .onnx [default: the "
                               "workspace's model]."),
    data: Path = typer.Option(None, "--data", help="Real images (ImageFolder/flat; DIR/train when DIR has train/ "
                              "and val/) [workspace: calibration/images]."),
    method: Method = typer.Option(Method.entropy, "--method"),
    percentile: float = typer.Option(99.99, "--percentile", help="For --method percentile."),
    num_images: int = typer.Option(None, "--num-images", min=1, show_default=False,
                                   help="Images to calibrate on [min(512, the images there are)]."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    out: Path = typer.Option(None, "--out", help="Calibration folder [default: calibration/<model>-<method>]."),
    trt_version: str = typer.Option(None, "--trt-version", help="Also write a TensorRT cache, e.g. 10.3.0."),
    seed: int = typer.Option(0, "--seed", help="Seed of the image selection."),
    force: bool = typer.Option(False, "--force", help="Replace a calibration of another model/data/method."),
    quiet: bool = typer.Option(False, "--quiet"),
    request=None,
) -> None:
    """Calibrate INT8 ranges on real images; reuses scales whose model and data hashes match."""
    from edgeres.cli.console import make_console
    from edgeres.cli.model_source import resolve_for_command
    from edgeres.cli.notices import printed_warnings
    from edgeres.errors import EdgeresError
    from edgeres.quant.workflow import CalibConfig, run_calibration
    from edgeres.workspace import find_workspace, short_arch

    resolved = resolve_for_command(request)
    ckpt = resolved.path
    ws = find_workspace()
    if data is None:
        if ws is None:
            raise EdgeresError("no --data given: calibration needs real images (an ImageFolder or a folder of images)")
        data = ws.root / ws.default("calibration", "data", "calibration/images")
    if out is None:
        name = (ws.model_name if ws is not None and ws.model_name else None) or short_arch(resolved.config.arch)
        out = (ws.calibration_dir if ws is not None else Path("calibration")) / f"{name}-{method.value}"
    with printed_warnings():
        result = run_calibration(CalibConfig(model=ckpt, data=data, out=out, method=method.value,
                                             percentile=percentile, num_images=num_images, batch_size=batch_size,
                                             seed=seed, force=force, trt_version=trt_version, progress=not quiet))
    verb = "reused matching scales in" if result.reused else "wrote"
    n = result.scales.data.get("images")
    make_console().print(f"{verb} {result.folder} ({result.scales.method}, {n} images): scales.json, model.qdq.onnx")

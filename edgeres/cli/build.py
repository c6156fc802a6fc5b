"""``edgeres build``: checkpoint -> engine folder with manifest."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class Backend(str, Enum):
    auto = "auto"
    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"


class OptLevel(str, Enum):
    basic = "basic"
    extended = "extended"
    all = "all"


def build(
    model: Path = typer.Option(None, "--model", help="Checkpoint [default: the workspace's model]."),
    precision: Precision = typer.Option(Precision.fp32, "--precision"),
    backend: Backend = typer.Option(
        None, "--backend", show_default=False,
        help="auto: TensorRT with a GPU, else ONNX Runtime (default: the workspace's build.backend, else auto).",
    ),
    out: Path = typer.Option(None, "--out", help="Engine folder [default: engines/<model>-<precision>]."),
    opset: int = typer.Option(17, "--opset"),
    exporter: str = typer.Option("torchscript", "--exporter", help="torchscript (opset <= 17 ok) or dynamo (18+)."),
    max_batch: int = typer.Option(32, "--max-batch", min=1, help="Largest batch the engine accepts."),
    opt_level: OptLevel = typer.Option(
        OptLevel.extended, "--opt-level",
        help="ONNX Runtime optimizations saved in the file; 'all' ties it to this CPU's ISA (recorded, checked).",
    ),
    uint8_input: bool = typer.Option(False, "--uint8-input", help="Normalize inside the network (uint8 input)."),
    calib: Path = typer.Option(None, "--calib", help="INT8: calibration folder from 'edgeres calibrate'."),
    calib_data: Path = typer.Option(None, "--calib-data", help="INT8: calibrate from these images (or reuse)."),
    calib_method: str = typer.Option("entropy", "--calib-method", help="INT8: entropy, minmax, percentile, mse."),
    force: bool = typer.Option(False, "--force", help="Replace an existing engine folder."),
) -> None:
    """Build an engine and its manifest."""
    from edgeres.build import BuildConfig, build_engine, pick_backend
    from edgeres.cli.console import make_console
    from edgeres.engine import command_line
    from edgeres.workspace import default_engine_dir, find_workspace, model_or_workspace_default

    ckpt = model_or_workspace_default(model)
    out = out or default_engine_dir(ckpt, precision.value)
    ws = find_workspace()  # edgeres.toml's [build] backend applies unless --backend is given
    chosen = pick_backend(backend.value if backend is not None else ws.default("build", "backend", "auto") if ws
                          else "auto")
    args = ["build", "--model", str(ckpt.resolve()), "--precision", precision.value, "--backend", chosen,
            "--out", str(out.resolve()), "--opset", str(opset), "--exporter", exporter, "--max-batch", str(max_batch),
            "--opt-level", opt_level.value, *(["--uint8-input"] if uint8_input else []), "--force"]
    if precision.value == "int8":
        args += ["--calib-method", calib_method]
        args += ["--calib", str(calib.resolve())] if calib else []
        args += ["--calib-data", str(calib_data.resolve())] if calib_data else []
    cfg = BuildConfig(model=ckpt, out=out, precision=precision.value, backend=chosen, opset=opset, exporter=exporter,
                      max_batch=max_batch, opt_level=opt_level.value, normalize_in_network=uint8_input, force=force,
                      build_command=command_line(args), calib=calib, calib_data=calib_data, calib_method=calib_method)
    engine_file, manifest = build_engine(cfg)
    detail = (f"calibration {manifest['calibration']['method']} ({manifest['calibration']['images']} images)"
              if "calibration" in manifest else f"export max abs diff {manifest['export']['max_abs_diff']:.1e}")
    make_console().print(
        f"built {engine_file} ({manifest['backend']['name']} {manifest['backend']['version']}, "
        f"{manifest['precision']}, {manifest['engine']['size'] / 2**20:.1f} MiB) in {manifest['build_seconds']:.1f} s; "
        + detail
    )

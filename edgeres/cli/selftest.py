"""``edgeres selftest``: on a Jetson or GPU machine, train (or take) a digits model, build FP32/FP16/INT8
TensorRT engines, check each against the ONNX Runtime CPU engine, benchmark them, print one table."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from edgeres.cli.model_source import model_options


@model_options
def selftest(
    model: Path = typer.Option(None, "--model", help="Use this model (checkpoint, .pth or .onnx) instead of training "
                               "a digits model."),
    out: Path = typer.Option(Path("selftest"), "--out", help="Working folder (data, model, engines)."),
    precisions: str = typer.Option("fp32,fp16,int8", "--precisions", help="Comma-separated precisions to build."),
    duration: float = typer.Option(3.0, "--duration", min=0.1, help="Seconds of timing per engine."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="Time batch 1 with CUDA-graph replay."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON instead of the table."),
    request=None,
) -> None:
    """Check TensorRT end to end on this device and print a table to paste into a bug report."""
    import json

    from edgeres.cli.console import make_console
    from edgeres.cli.model_source import resolve_for_command
    from edgeres.device.selftest import (
        SelftestConfig,
        parse_precisions,
        run_selftest,
        summary_table,
        unavailable_reason,
    )

    parse_precisions(precisions)  # a mistyped option is an error here too
    reason = unavailable_reason()
    if reason:
        make_console().print(f"selftest: nothing to test here: {reason}. It runs on a Jetson (JetPack 6) or a machine "
                             "with an NVIDIA GPU and TensorRT; CPU engines are covered by 'pytest'.")
        return
    model = resolve_for_command(request, quiet=json_out).path if request.given else None
    cfg = SelftestConfig(out=out, model=model, precisions=parse_precisions(precisions), duration=duration,
                         cuda_graph=cuda_graph)
    report = run_selftest(cfg)
    if json_out:
        print(json.dumps(report, indent=2))
    else:
        print(summary_table(report))
    if not report["passed"]:
        sys.exit(1)  # typer.Exit would be swallowed: main() runs the app with standalone_mode=False

"""``edgeres report``: accuracy/latency comparison of engines (and the torch reference) on the same data."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeres.cli.model_source import model_options


@model_options
def report(
    engines: list[Path] = typer.Option(..., "--engines", help="Engines to compare (repeat --engines for each)."),
    data: Path = typer.Option(
        ...,
        "--data",
        help="Labelled data as `edgeres eval` takes it: classify DIR/val/<class> "
        "or DIR/<class>; detect a COCO or YOLO split (or DIR/val).",
    ),
    out: Path = typer.Option(Path("reports/report"), "--out", help="Folder for report.md/.html/.json."),
    model: Path = typer.Option(
        None, "--model", help="FP32 reference: checkpoint, .pth or .onnx [default: the engines' source model]."
    ),
    batch: int = typer.Option(1, "--batch", min=1),
    duration: float = typer.Option(5.0, "--duration", min=0.1, help="Seconds timed per engine."),
    warmup: float = typer.Option(1.0, "--warmup", min=0.0),
    threads: int = typer.Option(None, "--threads", min=1),
    baseline: Path = typer.Option(None, "--baseline", help="An older report.json: regressions exit with code 2."),
    max_drop: float = typer.Option(
        None,
        "--max-drop",
        help="Regression: points of the task's metric lost vs the baseline (top-1 %, mAP@0.5 x 100) [default: 0.5].",
    ),
    max_top1_drop: float = typer.Option(None, "--max-top1-drop", help="Classifiers: the older name of --max-drop."),
    max_latency_increase: float = typer.Option(0.25, "--max-latency-increase", help="Regression: relative p50 rise."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing report."),
    request=None,
) -> None:
    """Evaluate (as edgeres eval) and time (as edgeres bench) every engine; write report.md, .html and .json."""
    from edgeres.cli.console import make_console
    from edgeres.cli.model_source import resolve_for_command
    from edgeres.fileio import check_writable
    from edgeres.report import ReportConfig, build_report, write_report
    from edgeres.tasks import get_task

    if (Path(out) / "report.json").exists():
        check_writable(Path(out) / "report.json", force)
    model = resolve_for_command(request).path if request.given else None
    cfg = ReportConfig(
        engines=engines,
        data=data,
        out=out,
        model=model,
        batch=batch,
        duration=duration,
        warmup=warmup,
        threads=threads,
        baseline=baseline,
        max_drop=max_drop,
        max_top1_drop=max_top1_drop,
        max_latency_increase=max_latency_increase,
        force=force,
    )
    result = build_report(cfg)
    regressions = result["regressions"]
    write_report(result, out, regressions, force=force)
    console = make_console()
    metric = get_task(result["task"]).metric
    key = metric.key
    for row in result["rows"]:
        delta = row[f"delta_{key}"]
        console.print(
            f"{row['name']:28s} {metric.label} {metric.fmt(row[key]):>8s} "
            f"({'-' if delta is None else format(delta, '+.2f')})  p50 {row['latency_ms']['p50']:7.2f} ms  "
            f"{row['throughput_ips']:8.1f} img/s",
            highlight=False,
        )
    console.print(f"wrote {out}/report.md, report.html, report.json")
    if regressions:
        make_console(stderr=True).print("[bold red]regressions vs the baseline:[/]\n  " + "\n  ".join(regressions))
        raise typer.Exit(code=2)

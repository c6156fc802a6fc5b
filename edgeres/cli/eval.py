"""``edgeres eval``: accuracy of a checkpoint on a data folder."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgeres.cli.model_source import model_options


@model_options
def evaluate(
    model: Path = typer.Option(None, "--model", help="Checkpoint, .pth state dict (with --arch) or .onnx."),
    engine: Path = typer.Option(None, "--engine", help="Or an engine (file, manifest or folder)."),
    data: Path = typer.Option(
        ..., "--data", help="classify: DIR/val/<class> or DIR/<class>; detect: a COCO or YOLO split (or DIR/val)."
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    request=None,
) -> None:
    """Classifiers: top-1, top-5, per-class accuracy, confusion matrix. Detectors: COCO mAP and per-class AP."""
    from edgeres.cli.model_source import resolve_for_command
    from edgeres.errors import EdgeresError
    from edgeres.evaluate import evaluate_checkpoint, evaluate_engine

    if request.given == (engine is not None):
        raise EdgeresError("give exactly one of --model CKPT (or --weights NAME) or --engine ENGINE")
    if engine is not None:
        if request.describing_options() or request.arch:
            raise EdgeresError(
                "--arch, --classes, --img-size and the like describe a --model; an engine's manifest "
                "already records them"
            )
        metrics = evaluate_engine(engine, data, batch_size=batch_size, progress=not json_out)
    else:
        if request.classes is None and request.num_classes is None:  # a foreign model's classes: the data's
            from dataclasses import replace

            from edgeres.data.imagefolder import load_eval_split
            from edgeres.models.checkpoint import checkpoint_task

            if request.model is not None and checkpoint_task(request.model) == "classify":
                request = replace(
                    request,
                    class_names=tuple(load_eval_split(data).class_names),
                    class_names_from=f"the data folder {data}",
                )
        resolved = resolve_for_command(request, quiet=json_out)
        metrics = evaluate_checkpoint(resolved.path, data, batch_size=batch_size, progress=not json_out)
        metrics["model"] = resolved.source
    if json_out:
        print(json.dumps(metrics, indent=2))
    else:
        print_metrics(metrics)


def print_metrics(metrics: dict) -> None:
    from rich.table import Table

    from edgeres.cli.console import make_console

    console = make_console()
    if metrics.get("task") == "detect":
        print_detection_metrics(console, metrics)
        return
    console.print(
        f"[bold]{metrics['images']} images[/]  top-1 [bold]{metrics['top1']:.2f}%[/]  "
        f"top-{metrics['top5_k']} {metrics['top5']:.2f}%"
    )
    names = metrics["class_names"]
    per = Table(title="per class")
    per.add_column("class")
    per.add_column("images", justify="right")
    per.add_column("top-1 %", justify="right")
    for name in names:
        row = metrics["per_class"][name]
        per.add_row(name, str(row["images"]), "-" if row["top1"] is None else f"{row['top1']:.2f}")
    console.print(per)
    if len(names) <= 20:
        cm = Table(title="confusion matrix (rows: true, columns: predicted)")
        cm.add_column("")
        for name in names:
            cm.add_column(name, justify="right")
        for name, row in zip(names, metrics["confusion"], strict=True):
            cm.add_row(name, *[str(v) if v else "." for v in row])
        console.print(cm)


def print_detection_metrics(console, metrics: dict) -> None:
    from rich.table import Table

    def fmt(value) -> str:  # None: no ground-truth box, so mAP is undefined
        return "-" if value is None else f"{value:.4f}"

    console.print(
        f"[bold]{metrics['images']} images, {metrics['gt_boxes']} boxes[/]  mAP@0.5 [bold]{fmt(metrics['map50'])}[/]  "
        f"mAP@0.5:0.95 {fmt(metrics['map'])}  mAP@0.75 {fmt(metrics['map75'])}"
    )
    per = Table(title="per class")
    per.add_column("class")
    per.add_column("AP@0.5", justify="right")
    for name in metrics["class_names"]:
        ap = metrics["per_class_ap50"].get(name)
        per.add_row(name, "-" if ap is None else f"{ap:.4f}")
    console.print(per)

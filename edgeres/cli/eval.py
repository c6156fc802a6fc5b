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
    """The task's metrics: classifiers top-1, top-5, per-class accuracy, confusion matrix; detectors COCO mAP and
    per-class AP."""
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

            from edgeres.models.checkpoint import checkpoint_task
            from edgeres.tasks import get_task

            if request.model is not None and request.model.is_file():  # else resolving says what is wrong
                split = get_task(checkpoint_task(request.model)).load_eval_split(data)
                request = replace(request, class_names=tuple(split.class_names),
                                  class_names_from=f"the data folder {data}")
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
    from edgeres.tasks import get_task

    console = make_console()
    task = get_task(metrics["task"])
    console.print(f"[bold]{task.summarize(metrics)}[/]")
    for title, columns, rows in task.tables(metrics):
        table = Table(title=title)
        for k, name in enumerate(columns):
            table.add_column(name, justify="left" if k == 0 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)

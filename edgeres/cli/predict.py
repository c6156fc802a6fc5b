"""``edgeres predict``: top-k classes of image files through an engine."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def predict(
    images: list[Path] = typer.Argument(..., help="Image files."),
    engine: Path = typer.Option(..., "--engine", help="Engine file, its manifest or its folder."),
    top_k: int = typer.Option(5, "--top-k", min=1),
    threads: int = typer.Option(None, "--threads", min=1),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per image on stdout."),
    score_threshold: float = typer.Option(None, "--score-threshold", help="detect: [default: the manifest's]"),
    nms_iou: float = typer.Option(None, "--nms-iou", help="detect: [default: the manifest's]"),
    draw: Path = typer.Option(None, "--draw", help="detect: write each image with its boxes into this folder."),
    force: bool = typer.Option(False, "--force", help="Overwrite images already in the --draw folder."),
) -> None:
    """Classify images, or detect objects in them, with an engine."""
    from edgeres.cli.console import make_console
    from edgeres.predict import predict_files

    results = predict_files(engine, images, top_k=top_k, threads=threads, score_threshold=score_threshold,
                            nms_iou=nms_iou, draw_dir=draw, force=force)
    if json_out:
        for r in results:
            print(json.dumps(r))
        return
    console = make_console()
    for r in results:
        if "top" in r:
            best = ", ".join(f"{p['label']} {p['score']:.3f}" for p in r["top"])
        else:
            best = f"{len(r['detections'])} objects" + "".join(
                f"; {d['label']} {d['score']:.2f} at ({', '.join(f'{v:.0f}' for v in d['box'])})"
                for d in r["detections"])
        console.print(f"{r['image']}: {best}", highlight=False)

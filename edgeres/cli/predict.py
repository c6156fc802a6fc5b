"""``edgeres predict``: an engine's predictions on image files (top-k classes, boxes, ...)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def predict(
    images: list[Path] = typer.Argument(..., help="Image files."),
    engine: Path = typer.Option(..., "--engine", help="Engine file, its manifest or its folder."),
    top_k: int = typer.Option(None, "--top-k", min=1, help="classify: classes shown per image [default: 5]."),
    threads: int = typer.Option(None, "--threads", min=1),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per image on stdout (docs/json.md)."),
    score_threshold: float = typer.Option(None, "--score-threshold", help="detect: [default: the manifest's]"),
    nms_iou: float = typer.Option(None, "--nms-iou", help="detect: [default: the manifest's]"),
    view: str = typer.Option(None, "--view", help="segment: overlay (colours over the image) or mask (the colour "
                             "map alone) [default: overlay]."),
    overlay_alpha: float = typer.Option(None, "--overlay-alpha", help="segment: opacity of the class colours "
                                        "[default: 0.5]."),
    draw: Path = typer.Option(
        None,
        "--draw",
        help="Write each image with its predictions drawn into this folder "
        "(boxes; the label panel of a classifier; a segmenter's colour overlay, plus NAME.classes.png, its "
        "class-id map as a palette PNG).",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite images already in the --draw folder."),
) -> None:
    """Predict on images with an engine: classes of a classifier, boxes of a detector, class maps of a segmenter."""
    from edgeres.cli.console import make_console
    from edgeres.predict import predict_files

    options = {"top_k": top_k, "score_threshold": score_threshold, "nms_iou": nms_iou, "view": view,
               "overlay_alpha": overlay_alpha}
    results = predict_files(engine, images, threads=threads, options=options, draw_dir=draw, force=force)
    if json_out:
        for r in results:
            print(json.dumps(r))
        return
    console = make_console()
    for r in results:
        console.print(f"{r['image']}: {describe(r['predictions'])}", highlight=False)


def describe(predictions: list[dict]) -> str:
    """One line for people from a prediction's JSON form: each label with its score, and its box where it has one."""
    if not predictions:
        return "nothing found"
    return ", ".join(
        f"{p['label']} {p['score']:.3f}" + (f" at ({', '.join(f'{v:.0f}' for v in p['box'])})" if "box" in p else "")
        for p in predictions
    )

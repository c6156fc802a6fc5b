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
) -> None:
    """Classify images with an engine."""
    from edgeres.cli.console import make_console
    from edgeres.predict import predict_files

    results = predict_files(engine, images, top_k=top_k, threads=threads)
    if json_out:
        for r in results:
            print(json.dumps(r))
        return
    console = make_console()
    for r in results:
        best = ", ".join(f"{p['label']} {p['score']:.3f}" for p in r["top"])
        console.print(f"{r['image']}: {best}", highlight=False)

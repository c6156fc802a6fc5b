"""``edgeres demo``: the whole pipeline on bundled real data."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("edgeres-demo"), "--out", help="Folder for everything the demo writes."),
    epochs: int = typer.Option(4, "--epochs", min=1),
    force: bool = typer.Option(False, "--force", help="Run again in a folder that holds a demo."),
) -> None:
    """Train, export, calibrate, build, evaluate and benchmark on the bundled digits (a few minutes on a CPU)."""
    from rich.table import Table

    from edgeres.cli.console import make_console
    from edgeres.demo import run_demo

    console = make_console()
    result = run_demo(out, epochs=epochs, force=force, say=lambda s: console.print(s))
    table = Table(title=f"edgeres demo: ResNet-18 on real MNIST digits, {len(result.rows)} CPU engines")
    for col in ("engine", "precision", "val top-1 %", "agrees w/ FP32 %", "inference p50 ms", "end-to-end p50 ms",
                "size MiB"):
        table.add_column(col, justify="left" if col in ("engine", "precision") else "right")
    for r in result.rows:
        table.add_row(r["engine"], r["precision"], f"{r['top1']:.2f}", f"{r['agreement']:.1f}", f"{r['infer_ms']:.2f}",
                      f"{r['e2e_ms']:.2f}", f"{r['size_mb']:.1f}")
    console.print(table)
    console.print(f"done in {result.seconds:.0f} s. Open:")
    for name, path in result.paths.items():
        console.print(f"  {name:12s} {path}")
    int8 = result.rows[-1]["path"]
    console.print(f"try: edgeres predict --engine {int8} {result.paths['data']}/val/7/*.png | head")

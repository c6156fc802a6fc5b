"""``edgeres demo``: the whole pipeline on bundled real data."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("edgeres-demo"), "--out", help="Folder for everything the demo writes."),
    epochs: int = typer.Option(4, "--epochs", min=1),
    force: bool = typer.Option(False, "--force", help="Run again in a folder that holds a demo."),
) -> None:
    """Train, quantize (PTQ + QAT), build, report and run the camera loop on the bundled digits (minutes, CPU)."""
    from rich.table import Table

    from edgeres.cli.console import make_console
    from edgeres.demo import run_demo

    console = make_console()
    result = run_demo(out, epochs=epochs, force=force, say=lambda s: console.print(s))
    table = Table(title="edgeres demo: ResNet-18 on real MNIST digits (val split, this CPU)")
    for col in ("engine", "precision", "quantization", "top-1 %", "Δ vs FP32", "agree %", "p50 ms", "img/s",
                "size MiB"):
        table.add_column(col, justify="left" if col in ("engine", "precision", "quantization") else "right")
    for r in result.rows:
        size = "-" if r["engine_size_mb"] is None else f"{r['engine_size_mb']:.1f}"
        table.add_row(r["name"], r["precision"], r["quantization"], f"{r['top1']:.2f}", f"{r['delta_top1']:+.2f}",
                      f"{r['agreement']:.1f}", f"{r['latency_ms']['p50']:.2f}", f"{r['throughput_ips']:.0f}", size)
    console.print(table)
    if result.camera:
        console.print("camera: " + ", ".join(f"{k} {v}" for k, v in result.camera.items() if k != "recording"))
    console.print(f"done in {result.seconds:.0f} s. Open:")
    for name, path in result.paths.items():
        console.print(f"  {name:12s} {path}")

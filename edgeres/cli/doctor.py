"""``edgeres doctor``: a verdict per line on this setup and, with ``--engine``, on one engine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

MARKS = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]", "info": "[dim]info[/]"}


def doctor(
    engine: Path = typer.Option(None, "--engine", help="Also judge this engine (file, manifest or folder)."),
    json_out: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Judge TensorRT, CUDA, cuda-python/pycuda, cameras and the Jetson power mode (exit 1 on any FAIL)."""
    from rich.markup import escape
    from rich.table import Table

    from edgeres.cli.console import make_console
    from edgeres.device.doctor import collect, judge, judge_engine

    checks = judge(collect())
    if engine is not None:
        checks += judge_engine(engine)
    if json_out:
        print(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        table = Table(show_header=True, box=None, padding=(0, 2))
        for col in ("check", "verdict", "detail", "what to do"):
            table.add_column(col, overflow="fold")
        for c in checks:
            table.add_row(c.name, MARKS[c.verdict], escape(c.detail), escape(c.fix))
        make_console().print(table)
    if any(c.verdict == "fail" for c in checks):
        sys.exit(1)  # typer.Exit would be swallowed: main() runs the app with standalone_mode=False

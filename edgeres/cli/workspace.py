"""``edgeres init``: make a workspace (calibration/, engines/, edgeres.toml)."""

from __future__ import annotations

from pathlib import Path

import typer


def init(
    folder: Path = typer.Argument(Path("."), help="Workspace folder [default: here]."),
    model: Path = typer.Option(None, "--model", help="Checkpoint the workspace builds from."),
    name: str = typer.Option(None, "--name", help="Engine name prefix [default: from the architecture, e.g. r18]."),
    force: bool = typer.Option(False, "--force", help="Rewrite an existing edgeres.toml."),
) -> None:
    """Create a workspace so short commands (edgeres build --precision fp32) work inside it."""
    from edgeres.cli.console import make_console
    from edgeres.workspace import init_workspace

    ws = init_workspace(folder, model=model, name=name, force=force)
    make_console().print(f"workspace ready in {ws.root} (edgeres.toml, calibration/, engines/)", highlight=False)

"""``edgeres init``: make a workspace (calibration/, engines/, edgeres.toml)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeres.cli.model_source import model_options


@model_options
def init(
    folder: Path = typer.Argument(Path("."), help="Workspace folder [default: here]."),
    model: Path = typer.Option(None, "--model", help="The model the workspace builds from: a checkpoint, a .pth state "
                               "dict or an .onnx (those two are imported into FOLDER/models/)."),
    name: str = typer.Option(None, "--name", help="Engine name prefix [default: from the architecture, e.g. r18]."),
    force: bool = typer.Option(False, "--force", help="Rewrite an existing edgeres.toml."),
    request=None,
) -> None:
    """Create a workspace so short commands (edgeres build --precision fp32) work inside it."""
    from edgeres.cli.console import make_console
    from edgeres.cli.model_source import resolve_for_command
    from edgeres.workspace import WORKSPACE_FILE, init_workspace

    if request.given:
        from edgeres.fileio import check_writable

        check_writable(folder / WORKSPACE_FILE, force)  # before any import is written
        resolved = resolve_for_command(request, workspace_default=False)
        if resolved.foreign:  # the workspace keeps its own copy: the cache may be cleared, the source moved
            from edgeres.models.sources import resolve_model

            suffix = ".onnx" if resolved.is_onnx else ".safetensors"
            stem = Path(resolved.source).stem if request.model is not None else resolved.config.arch
            imported = resolve_model(request, out=folder / "models" / f"{stem}{suffix}", force=force)
            model = imported.path
        else:
            model = resolved.path
    ws = init_workspace(folder, model=model, name=name, force=force)
    make_console().print(f"workspace ready in {ws.root} (edgeres.toml, calibration/, engines/)", highlight=False)

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
        from edgeres.models.sources import is_edgeres_model

        check_writable(folder / WORKSPACE_FILE, force)  # before any import is written
        copy = None  # a foreign model is imported into the workspace: the cache may be cleared, the source moved
        if request.model is None or not is_edgeres_model(request.model):
            stem = Path(request.model).stem if request.model is not None else request.arch or "model"
            onnx = request.model is not None and request.model.suffix.lower() == ".onnx"
            suffix = ".onnx" if onnx else ".safetensors"
            copy = folder / "models" / f"{stem}{suffix}"
        model = resolve_for_command(request, workspace_default=False, out=copy, force=force).path
    ws = init_workspace(folder, model=model, name=name, force=force)
    make_console().print(f"workspace ready in {ws.root} (edgeres.toml, calibration/, engines/)", highlight=False)

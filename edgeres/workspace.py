"""Workspaces: a folder with ``calibration/``, ``engines/`` and an ``edgeres.toml`` naming the model
and defaults, so that short commands (``edgeres build --precision int8``) work inside it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from edgeres.errors import EdgeresError
from edgeres.fileio import write_text_atomic

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

WORKSPACE_FILE = "edgeres.toml"


@dataclass
class Workspace:
    root: Path
    settings: dict = field(default_factory=dict)

    @property
    def calibration_dir(self) -> Path:
        return self.root / "calibration"

    @property
    def engines_dir(self) -> Path:
        return self.root / "engines"

    @property
    def model(self) -> Path | None:
        """The workspace's checkpoint (paths in edgeres.toml are relative to the workspace)."""
        value = self.settings.get("model", {}).get("checkpoint")
        return (self.root / value) if value else None

    @property
    def model_name(self) -> str | None:
        return self.settings.get("model", {}).get("name")

    def default(self, section: str, key: str, fallback=None):
        return self.settings.get(section, {}).get(key, fallback)


def find_workspace(start: Path | None = None) -> Workspace | None:
    """The workspace containing ``start`` (default: the current folder), searching upwards."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        cfg = folder / WORKSPACE_FILE
        if cfg.is_file():
            try:
                return Workspace(folder, tomllib.loads(cfg.read_text()))
            except tomllib.TOMLDecodeError as exc:
                raise EdgeresError(f"{cfg} is not valid TOML: {exc}") from None
    return None


def init_workspace(root: Path, model: Path | None = None, name: str | None = None, force: bool = False) -> Workspace:
    """Create ``calibration/``, ``engines/`` and ``edgeres.toml`` in ``root``."""
    root = Path(root)
    cfg = root / WORKSPACE_FILE
    if cfg.exists() and not force:
        raise EdgeresError(f"{cfg} already exists; pass --force to rewrite it")
    for sub in ("calibration", "engines"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    settings: dict = {"model": {}, "build": {"backend": "auto"}, "calibration": {"method": "entropy"}}
    if model is not None:
        settings["model"]["checkpoint"] = _relative(Path(model), root)
    if name:
        settings["model"]["name"] = name
    write_text_atomic(cfg, dump_toml(settings))
    return Workspace(root.resolve(), settings)


def record_trained_model(checkpoint: Path) -> Path | None:
    """After ``train``: point the enclosing workspace (if any) at the new checkpoint."""
    ws = find_workspace()
    if ws is None or not Path(checkpoint).is_file():
        return None
    ws.settings.setdefault("model", {})["checkpoint"] = _relative(Path(checkpoint).resolve(), ws.root)
    write_text_atomic(ws.root / WORKSPACE_FILE, dump_toml(ws.settings))
    return ws.root / WORKSPACE_FILE


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path.resolve())


def dump_toml(settings: dict) -> str:
    """Write the workspace's flat ``[section] key = value`` TOML (strings, numbers, booleans)."""
    lines = ["# edgeres workspace: paths are relative to this folder; command-line options always win", ""]
    for section, values in settings.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def model_or_workspace_default(model: Path | None) -> Path:
    """The checkpoint to use: the explicit one, else the workspace's; a clear error when neither exists."""
    if model is not None:
        return Path(model)
    ws = find_workspace()
    if ws is None:
        raise EdgeresError("no --model given and no workspace here; pass --model CKPT or run 'edgeres init "
                           "--model CKPT' to make this folder a workspace")
    if ws.model is None:
        raise EdgeresError(f"the workspace {ws.root} names no model yet; run 'edgeres train' in it or "
                           "'edgeres init --model CKPT --force'")
    return ws.model


def short_arch(arch: str) -> str:
    """resnet18 -> r18 (engine names users type)."""
    return "r" + arch.removeprefix("resnet") if arch.startswith("resnet") else arch


def default_engine_dir(checkpoint: Path, precision: str) -> Path:
    """``engines/<name>-<precision>`` in the workspace (or under ./engines outside one)."""
    from edgeres.models.checkpoint import load_checkpoint

    ws = find_workspace()
    name = ws.model_name if ws is not None and ws.model_name else short_arch(load_checkpoint(checkpoint).config.arch)
    root = ws.engines_dir if ws is not None else Path("engines")
    return root / f"{name}-{precision}"

"""The engine manifest, in one place: its schema version, where it lives beside an engine, how a fresh one is
written (``make_manifest``) and how one is read and checked (``read_manifest``) before any field is used.

A manifest is the JSON file that vouches for an engine: what model it was built from (and that file's hash), the
engine file's hash, backend and device, pre-processing, the task's decoding settings and how to rebuild it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from edgeres import __version__
from edgeres.backends import backend_module, engine_suffixes
from edgeres.config import PreprocessConfig
from edgeres.errors import EdgeresError
from edgeres.models.checkpoint import file_sha256

if TYPE_CHECKING:
    from edgeres.build import BuildConfig

SCHEMA_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"


def manifest_path_for(engine_file: Path) -> Path:
    engine_file = Path(engine_file)
    return engine_file.with_name(engine_file.stem + MANIFEST_SUFFIX)


def read_manifest(path: Path) -> dict:
    """Parse a manifest and check its schema version and required fields."""
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise EdgeresError(f"cannot read engine manifest {path}: {exc}") from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if not isinstance(version, int):
        raise EdgeresError(f"{path} is not an edgeres engine manifest (no schema_version)")
    if version > SCHEMA_VERSION:
        raise EdgeresError(
            f"{path} uses manifest schema {version}, newer than this edgeres reads ({SCHEMA_VERSION}); upgrade edgeres"
        )
    missing = [k for k in ("task", "arch", "class_names", "input", "preprocess", "precision", "engine", "backend")
               if k not in manifest]
    if missing:
        raise EdgeresError(f"{path} is missing manifest fields: {', '.join(missing)}")
    _check_field_types(manifest, path)
    name = manifest["engine"].get("file", "")
    if not name or Path(name).name != name:
        raise EdgeresError(f"{path}: engine file name '{name}' must be a plain file name beside the manifest")
    return manifest


def _check_field_types(manifest: dict, path: Path) -> None:
    """Refuse an edited manifest whose fields have the wrong types, before any of them is used."""
    sections = ("engine", "backend", "input", "preprocess", "device", "source")
    wrong = [k for k in sections if k in manifest and not isinstance(manifest[k], dict)]
    names = manifest["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        wrong.append("class_names")
    wrong += [k for k in ("task", "arch", "precision") if not isinstance(manifest[k], str)]
    if not wrong:
        eng, backend = manifest["engine"], manifest["backend"]
        if not isinstance(eng.get("file"), str) or not isinstance(eng.get("sha256"), str):
            wrong.append("engine.file/sha256")
        if backend.get("name") not in engine_suffixes():
            wrong.append(f"backend.name (accepted: {', '.join(engine_suffixes())})")
        batch = manifest["input"].get("max_batch")
        if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
            wrong.append("input.max_batch")
        try:
            pre = PreprocessConfig.from_dict(manifest["preprocess"])
            ok = (
                len(pre.input_size) == 2
                and all(isinstance(v, int) and v > 0 for v in pre.input_size)
                and len(pre.mean) == len(pre.std) == 3
                and all(isinstance(v, (int, float)) for v in pre.mean)
                and all(isinstance(v, (int, float)) and v > 0 for v in pre.std)
                and pre.channel_order in ("RGB", "BGR")
                and pre.interpolation in ("linear", "area", "nearest", "cubic")
            )
        except (TypeError, ValueError, KeyError):
            ok = False
        if not ok:
            wrong.append("preprocess")
    if wrong:
        raise EdgeresError(
            f"{path} is not a valid edgeres engine manifest: wrong or unreadable {', '.join(wrong)}; "
            "rebuild the engine with 'edgeres build'"
        )


def make_manifest(cfg: BuildConfig, config, preprocess: dict, engine_file: Path, backend: str, backend_info: dict,
                  input_info: dict, export: dict) -> dict:
    """The manifest of a freshly built engine (schema ``SCHEMA_VERSION``)."""
    from edgeres.device.cpu import cpu_facts
    from edgeres.tasks import get_task

    cpu = cpu_facts()
    return {
        "schema_version": SCHEMA_VERSION,
        "edgeres_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "task": config.task,
        "arch": config.arch,
        "class_names": list(config.class_names),
        "input": input_info,
        "outputs": export["output_names"],
        "preprocess": preprocess,
        "precision": cfg.precision,
        "source": {"checkpoint": str(Path(cfg.model).resolve()), "sha256": file_sha256(Path(cfg.model))},
        "engine": {"file": engine_file.name, "sha256": file_sha256(engine_file), "size": engine_file.stat().st_size},
        "export": {k: v for k, v in export.items() if k != "path"},
        "backend": {"name": backend, "version": backend_module(backend).version(), **backend_info},
        "device": {"cpu_isa": cpu["isa"], "cpu_model": cpu["model"], "arch": cpu["arch"], "gpu": None,
                   "compute_capability": None},
        "build_options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
                          if k not in ("force", "build_command", "backend_reason")},
        "build_command": cfg.build_command,
    } | get_task(config.task).manifest_block({"score_threshold": cfg.score_threshold, "nms_iou": cfg.nms_iou})

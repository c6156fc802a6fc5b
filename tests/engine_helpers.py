"""Plain helpers for the engine tests: engine folder files, private copies, manifest edits, validation digits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def val_digit_files(digits_data: Path, per_class: int = 5) -> list[tuple[Path, int]]:
    """(file, true digit) for the first ``per_class`` validation images of every digit (never trained on)."""
    files = []
    for digit in range(10):
        found = sorted((digits_data / "val" / str(digit)).glob("*.png"))[:per_class]
        assert len(found) == per_class, digit
        files += [(path, digit) for path in found]
    return files


def engine_files(folder: Path) -> tuple[Path, Path]:
    """(engine file, manifest file) of an engine folder built by edgeres."""
    manifest = next(folder.glob("*.manifest.json"))
    return folder / json.loads(manifest.read_text())["engine"]["file"], manifest


def copy_engine(folder: Path, dest: Path) -> Path:
    """A private copy of an engine folder (same file names) that a test may change."""
    shutil.copytree(folder, dest)
    return dest


def link_engine(folder: Path, dest: Path) -> Path:
    """A copy of an engine folder whose manifest may be changed; the engine file is a hard link (never write it)."""
    import os

    dest.mkdir(parents=True)
    for path in folder.iterdir():
        if path.name.endswith(".manifest.json"):
            shutil.copy(path, dest / path.name)
        else:
            os.link(path, dest / path.name)
    return dest


def rewrite_manifest(folder: Path, **changes) -> dict:
    """Apply ``section={key: value}`` changes to an engine folder's manifest and re-hash its engine file.

    Used to model an engine whose bytes were replaced *and* whose manifest was updated to match, so the
    checks behind the manifest (the ONNX file checks) are what must catch the problem.
    """
    from edgeres.models.checkpoint import file_sha256

    engine_file, manifest_file = engine_files(folder)
    manifest = json.loads(manifest_file.read_text())
    manifest["engine"].update(sha256=file_sha256(engine_file), size=engine_file.stat().st_size)
    for section, values in changes.items():
        if isinstance(values, dict):
            manifest[section].update(values)
        else:
            manifest[section] = values
    manifest_file.write_text(json.dumps(manifest, indent=2))
    return manifest

"""Atomic writes and the no-overwrite rule, used for every artifact edgeres writes."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from edgeres.errors import EdgeresError


def check_writable(path: Path, force: bool) -> None:
    """Refuse to replace an existing file unless ``force`` is set."""
    if Path(path).exists() and not force:
        raise EdgeresError(f"{path} already exists; pass --force to overwrite it")


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; artifacts are ordinary readable files
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")

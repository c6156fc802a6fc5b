"""Small helpers the device-fact modules share: read a file, run a tool, split ``key: value`` text, import a
package; none of them raises because something is missing."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

TIMEOUT_S = 5


def fields_of(text: str) -> dict[str, str]:
    """First value of each ``key : value`` line, keys lowercased (cpuinfo repeats them per core)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def import_or_none(name: str, errors: dict[str, str]):
    """The module, or None; an installed package that fails to import is noted in ``errors``."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the package is there, one of its own dependencies is not
            errors[name] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a broken install (missing .so, CUDA mismatch) must not stop `info`
        errors[name] = f"{type(exc).__name__}: {exc}"
    return None


def run_tool(cmd: list[str]) -> tuple[str | None, str | None]:
    """(stdout, None) on success, (None, first line of the error) otherwise."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        return None, msg[0] if msg else f"exit code {proc.returncode}"
    return proc.stdout, None

"""Writing a deployment folder atomically, and the no-overwrite rule for folders edgeres did not write."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

from edgeres.errors import EdgeresError
from edgeres.fileio import replace_folder

MARKER = "edgeres-deploy.json"  # written into every folder deploy creates; --force replaces only such folders


def check_out_folder(out: Path, force: bool, what: str) -> None:
    """Refuse an existing non-empty ``out`` without ``force``, and a folder edgeres did not write even with it.

    Args:
        out: the folder to be written.
        force: the user passed --force.
        what: what the folder is, for the message ("DeepStream folder", "Triton model").
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgeresError(f"{out} exists and is not a folder; --out names the {what} to write")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise EdgeresError(f"{out} already exists; pass --force to replace that {what}")
        if not (out / MARKER).is_file():
            raise EdgeresError(
                f"{out} was not written by 'edgeres deploy' (no {MARKER}); refusing to replace it even "
                "with --force; choose another --out"
            )


@contextlib.contextmanager
def staged_folder(out: Path, facts: dict):
    """Yield an empty temporary folder beside ``out``; on success it gets ``MARKER`` and replaces ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps(facts, indent=2) + "\n")
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

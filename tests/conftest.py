"""Shared fixtures: marker handling, RNG hygiene and tiny real data sets built once per session."""

from __future__ import annotations

import functools
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py, importable as `helpers`

from helpers import SHORT_TRAIN, run_cli, write_digit_folder

pytest_plugins = ("pytester",)  # test_imports.py runs this conftest on small generated test files


@functools.lru_cache(maxsize=1)
def trt_unavailable_reason() -> str | None:
    """Why TensorRT tests cannot run here, or None when ``import tensorrt`` works and a GPU exists."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising anything at import
        return f"TensorRT is not importable ({type(exc).__name__}: {exc})"
    try:
        import torch

        if torch.cuda.is_available():
            return None
    except ImportError:
        pass
    if shutil.which("nvidia-smi"):
        try:
            found = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return "nvidia-smi did not answer"
        if found.returncode == 0 and "GPU" in found.stdout:
            return None
    return "no NVIDIA GPU found"


# Fixtures whose training takes minutes on a 2-core AVX2 CPU (the detector's and the segmenter's, after the digits
# classifier's): every test that needs one is marked slow, so the README's `pytest -q` keeps its time budget and
# `pytest -m slow` (run by CI after it) runs them.
SLOW_FIXTURES = frozenset({"trained_detector", "trained_segmenter"})


@pytest.hookimpl(tryfirst=True)  # before `-m 'not slow'` deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    needs_trt = [item for item in items if item.get_closest_marker("needs_trt")]
    if not needs_trt:
        return
    reason = trt_unavailable_reason()
    if reason:
        for item in needs_trt:
            item.add_marker(pytest.mark.skip(reason=f"needs_trt: {reason}"))


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Tests may seed torch/numpy/random freely: the global RNG state is put back afterwards."""
    try:
        import torch
    except ImportError:  # torch is an extra; the rest of the suite still runs
        torch = None
    py_state, np_state = random.getstate(), np.random.get_state()
    torch_state = torch.random.get_rng_state() if torch is not None else None
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
    if torch_state is not None:
        torch.random.set_rng_state(torch_state)


@pytest.fixture(scope="session")
def digits3(tmp_path_factory) -> Path:
    """Real MNIST digits 0, 1, 2: 20 grayscale 32x32 PNGs each in ``<root>/<digit>/``. Read-only."""
    return write_digit_folder(tmp_path_factory.mktemp("digits3") / "data", digits=(0, 1, 2), per_class=20)


@pytest.fixture(scope="session")
def digits4(tmp_path_factory) -> Path:
    """Real MNIST digits 0-3 (10 each): a folder with one class more than ``digits3``. Read-only."""
    return write_digit_folder(tmp_path_factory.mktemp("digits4") / "data", digits=(0, 1, 2, 3), per_class=10)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, digits3) -> Path:
    """A finished 2-epoch resnet18 run on ``digits3`` made by the real CLI. Read-only: copy it to change it."""
    work = tmp_path_factory.mktemp("trained")
    out = work / "run"
    proc = run_cli("train", "--data", digits3, "--out", out, "--arch", "resnet18", *SHORT_TRAIN, cwd=work)
    assert proc.returncode == 0, proc.stderr
    return out

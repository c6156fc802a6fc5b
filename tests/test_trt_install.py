"""Install pins for TensorRT: each extra holds one CUDA major for TensorRT and cuda-python alike, and the Jetson
guide's cuda-python pins match the CUDA each JetPack ships."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if sys.version_info >= (3, 11):
    import tomllib
else:  # the core dependencies carry tomli for 3.10
    import tomli as tomllib


def extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def pinned_major(requirements: list[str], name: str) -> int:
    """The CUDA major ``name`` is held to by an upper bound ``<MAJOR+1`` (with ``>=MAJOR`` for cuda-python)."""
    (req,) = [r for r in requirements if re.match(rf"^{re.escape(name)}\b", r)]
    upper = re.search(r"<\s*(\d+)", req)
    assert upper, f"{req}: no upper bound, so pip may pick the next CUDA major"
    return int(upper[1]) - 1


@pytest.mark.parametrize(("extra", "cuda"), [("tensorrt", 12), ("tensorrt-cu13", 13)])
def test_each_tensorrt_extra_holds_one_cuda_major(extra, cuda):
    reqs = extras()[extra]
    names = [re.match(r"^[A-Za-z0-9_.-]+", r)[0] for r in reqs]
    # the bare `tensorrt` metapackage follows NVIDIA's newest CUDA, whatever the driver
    assert f"tensorrt-cu{cuda}" in names and "tensorrt" not in names
    assert pinned_major(reqs, "cuda-python") == cuda
    assert any(r.startswith("cuda-python>=" + str(cuda)) for r in reqs)
    tensorrt = next(r for r in reqs if r.startswith(f"tensorrt-cu{cuda}"))
    assert "<12" in tensorrt  # TensorRT 8.6/10.x/11.x only: what versions.features accepts


def test_jetson_guide_pins_cuda_python_to_each_jetpacks_cuda():
    text = (ROOT / "docs" / "jetson.md").read_text()
    pins = dict(re.findall(r'pip install "cuda-python==(\d+\.\d+)\.\*"\s+# JetPack (\S+)', text))
    assert pins == {"12.2": "6.0", "12.6": "6.1/6.2"}, pins

"""Helpers for the TensorRT tests that run without TensorRT: the bindings' exported-name lists, a namespace
built from them, and TensorRT-style engine folders for the manifest and compatibility checks.

Nothing here imitates a TensorRT result. ``engine_folder`` writes placeholder bytes (clearly not an engine)
so that the checks *before* deserialization (hash, version, GPU, DLA, L4T) can be tested; those checks
never read an engine's content.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

NAMES_DIR = Path(__file__).parent / "data" / "trt_names"
PLACEHOLDER = b"placeholder bytes for manifest tests; not a TensorRT engine\n"


def name_lists() -> dict[str, set[str]]:
    """{bindings version: exported names} from ``tests/data/trt_names/<version>.txt``."""
    out = {}
    for path in sorted(NAMES_DIR.glob("*.txt")):
        out[path.stem] = {line for line in path.read_text().splitlines() if line and not line.startswith("#")}
    return out


class Names:
    """Attribute access limited to one version's exported names: ``ns.BuilderFlag.FP16`` is an int-like
    token if the bindings export it, and an AttributeError otherwise. For version-dispatch code only."""

    def __init__(self, names: set[str], prefix: str = ""):
        self._names, self._prefix = names, prefix

    def __getattr__(self, attr: str):
        path = f"{self._prefix}.{attr}" if self._prefix else attr
        if path not in self._names:
            raise AttributeError(f"this TensorRT version's bindings have no {path}")
        if any(n.startswith(path + ".") for n in self._names):
            return Names(self._names, path)
        return Token(path)


class Token(int):
    """An enum member stand-in: an int (bit position by stable hash) that remembers its name."""

    def __new__(cls, path: str):
        token = super().__new__(cls, int(hashlib.sha256(path.encode()).hexdigest(), 16) % 31)
        token.path = path
        return token

    def __repr__(self) -> str:
        return self.path


def engine_folder(root: Path, name: str = "r18-trt", backend: dict | None = None, device: dict | None = None,
                  precision: str = "fp16") -> Path:
    """A TensorRT-style engine folder (placeholder bytes + a manifest as ``build`` writes it)."""
    folder = Path(root) / name
    folder.mkdir(parents=True)
    plan = folder / f"{name}.plan"
    plan.write_bytes(PLACEHOLDER)
    manifest = {
        "schema_version": 1, "edgeres_version": "0.1.0", "created": "2026-01-01T00:00:00+00:00",
        "task": "classify", "arch": "resnet18", "class_names": [str(i) for i in range(10)],
        "input": {"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32", "max_batch": 32},
        "outputs": ["logits"],
        "preprocess": {"input_size": [32, 32], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                       "channel_order": "RGB", "layout": "NCHW", "resize": "stretch", "interpolation": "linear",
                       "normalize_in_network": False},
        "precision": precision, "source": {"checkpoint": None, "sha256": None},
        "engine": {"file": plan.name, "sha256": hashlib.sha256(PLACEHOLDER).hexdigest(), "size": len(PLACEHOLDER)},
        "export": {"output_names": ["logits"]},
        "backend": {"name": "tensorrt", "version": "10.3.0", "version_compatible": False, "hardware_compat": "none",
                    "dla_core": None, **(backend or {})},
        "device": {"cpu_isa": "aarch64-neon-dotprod", "gpu": "Orin", "compute_capability": "8.7", "l4t": "36.4.0",
                   "dla_core": None, **(device or {})},
        "build_command": "edgeres build --backend tensorrt --precision fp16 --out engines/r18-trt --force",
    }
    (folder / f"{name}.manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


ORIN_10_3 = {"backend_version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "l4t": "36.4.0",
             "dla_cores": 2, "cpu_isa": "aarch64-neon-dotprod"}

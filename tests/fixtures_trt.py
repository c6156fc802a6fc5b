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
from types import SimpleNamespace

import numpy as np

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


def engine_folder(
    root: Path, name: str = "r18-trt", backend: dict | None = None, device: dict | None = None, precision: str = "fp16"
) -> Path:
    """A TensorRT-style engine folder (placeholder bytes + a manifest as ``build`` writes it)."""
    folder = Path(root) / name
    folder.mkdir(parents=True)
    plan = folder / f"{name}.plan"
    plan.write_bytes(PLACEHOLDER)
    manifest = {
        "schema_version": 1,
        "edgeres_version": "0.1.0",
        "created": "2026-01-01T00:00:00+00:00",
        "task": "classify",
        "arch": "resnet18",
        "class_names": [str(i) for i in range(10)],
        "input": {"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32", "max_batch": 32},
        "outputs": ["logits"],
        "preprocess": {
            "input_size": [32, 32],
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "channel_order": "RGB",
            "layout": "NCHW",
            "resize": "stretch",
            "interpolation": "linear",
            "normalize_in_network": False,
        },
        "precision": precision,
        "source": {"checkpoint": None, "sha256": None},
        "engine": {"file": plan.name, "sha256": hashlib.sha256(PLACEHOLDER).hexdigest(), "size": len(PLACEHOLDER)},
        "export": {"output_names": ["logits"]},
        "backend": {
            "name": "tensorrt",
            "version": "10.3.0",
            "version_compatible": False,
            "hardware_compat": "none",
            "dla_core": None,
            **(backend or {}),
        },
        "device": {
            "cpu_isa": "aarch64-neon-dotprod",
            "gpu": "Orin",
            "compute_capability": "8.7",
            "l4t": "36.4.0",
            "dla_core": None,
            **(device or {}),
        },
        "build_command": "edgeres build --backend tensorrt --precision fp16 --out engines/r18-trt --force",
    }
    (folder / f"{name}.manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


ORIN_10_3 = {
    "backend_version": "10.3.0",
    "gpu": "Orin",
    "compute_capability": "8.7",
    "l4t": "36.4.0",
    "dla_cores": 2,
    "cpu_isa": "aarch64-neon-dotprod",
}


# --- Test doubles for the runner's seams (no GPU or TensorRT here). They record the calls the runner makes and
# answer True/False as told; they compute nothing, so no test can read an inference result from them.


class HostCuda:
    """The runner's CUDA API (``buffers.CudaPython``'s methods) on host memory, recording graph capture/launch."""

    name = "host-test-double"

    def __init__(self):
        self.calls: list[tuple] = []
        self.graphs_made = 0
        self.destroyed: list[int] = []

    def host_empty(self, shape, dtype):
        return np.zeros(shape, dtype)

    def malloc(self, nbytes):
        self.calls.append(("malloc", nbytes))
        return 0x1000 * (len(self.calls) + 1)

    def stream(self):
        return "stream"

    def handle(self, stream):
        return 7

    def event(self):
        return object()

    def record(self, event, stream):
        pass

    def elapsed_ms(self, start, end):
        return 0.0

    def h2d(self, dst, src, nbytes, stream):
        self.calls.append(("h2d", nbytes))

    def d2h(self, dst, src, nbytes, stream):
        self.calls.append(("d2h", nbytes))

    def synchronize(self, stream):
        pass

    def capture(self, stream, enqueue):
        """Like ``CudaPython.capture``: a False from ``enqueue`` is a failed capture (no graph returned)."""
        from edgeres.errors import EdgeresError

        self.calls.append(("capture",))
        if enqueue() is False:
            raise EdgeresError("TensorRT could not enqueue the engine during CUDA-graph capture")
        self.graphs_made += 1
        return self.graphs_made

    def launch(self, graph, stream):
        self.calls.append(("launch", graph))

    def destroy_graph(self, graph):
        self.destroyed.append(graph)

    def destroy_event(self, event):
        pass

    def free(self, ptr):
        pass

    def free_host(self, array):
        pass

    def destroy_stream(self, stream):
        pass

    def close(self):
        pass


class RecordingContext:
    """An execution context double: ``answers`` says what each call returns (True unless told otherwise)."""

    def __init__(self, input_shape, output_shape, answers: dict | None = None):
        self.shapes = {"input": tuple(input_shape), "logits": tuple(output_shape)}
        self.answers = {
            "set_input_shape": True,
            "set_tensor_address": True,
            "execute_async_v3": True,
            **(answers or {}),
        }
        self.calls: list[tuple] = []

    def get_tensor_shape(self, name):
        return self.shapes[name]

    def set_input_shape(self, name, shape):
        self.calls.append(("set_input_shape", name, tuple(shape)))
        if self.answers["set_input_shape"]:
            self.shapes[name] = tuple(shape)
            self.shapes["logits"] = (shape[0], *self.shapes["logits"][1:])
        return self.answers["set_input_shape"]

    def set_tensor_address(self, name, ptr):
        self.calls.append(("set_tensor_address", name))
        return self.answers["set_tensor_address"]

    def execute_async_v3(self, handle):
        self.calls.append(("execute_async_v3",))
        answer = self.answers["execute_async_v3"]
        return answer.pop(0) if isinstance(answer, list) else answer


class ProfileEngine:
    """An engine double with one input (N, 3, 8, 8) -> logits (N, 5) and a batch profile (min, opt, max)."""

    num_io_tensors = 2

    def __init__(self, profile=(1, 1, 8)):
        self.profile = profile

    def get_tensor_name(self, i):
        return ("input", "logits")[i]

    def get_tensor_mode(self, name):
        return "INPUT" if name == "input" else "OUTPUT"

    def get_tensor_dtype(self, name):
        return "FLOAT"

    def get_tensor_shape(self, name):
        return (-1, 3, 8, 8) if name == "input" else (-1, 5)

    def get_tensor_profile_shape(self, name, index):
        return [(b, 3, 8, 8) for b in self.profile]


TRT_IO = SimpleNamespace(TensorIOMode=SimpleNamespace(INPUT="INPUT"), nptype=lambda dtype: np.float32)


def runner_on_doubles(profile=(1, 1, 8), answers: dict | None = None, cuda_graph: bool = False):
    """A ``TensorRTRunner`` wired to the doubles through its seams (``cuda``, ``engine``, ``context``), allocated
    as ``activate`` does after deserialization."""
    from edgeres.backends.trt.runner import TensorRTRunner

    runner = TensorRTRunner("unused.plan", cuda_graph=cuda_graph, manifest={"engine": {}, "backend": {}})
    runner.cuda, runner.engine = HostCuda(), ProfileEngine(profile)
    runner.context = RecordingContext((-1, 3, 8, 8), (-1, 5), answers)
    runner._allocate(TRT_IO)
    runner.is_active = True
    return runner

"""What a deployment takes from an engine folder: its manifest, its I/O, and the ONNX files a GPU builds from.

An ONNX Runtime engine is an ONNX Runtime-optimized file (contrib ops, CPU rewrites), not something TensorRT
parses, so the GPU side gets the files the engine was made from: the calibration folder's Q/DQ artifact and
FP32 export (INT8), the Q/DQ file kept beside a ``mixed`` engine, a TensorRT engine's source ONNX, or a fresh
export of the recorded checkpoint (FP32). Every one is checked against the hashes the manifest recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeres.backends import backend_module
from edgeres.config import PreprocessConfig
from edgeres.engine import resolve
from edgeres.errors import EdgeresError
from edgeres.manifest import read_manifest
from edgeres.models.checkpoint import file_sha256
from edgeres.onnx_model.graph import onnx_file_io
from edgeres.tasks import get_task, task_names
from edgeres.tasks.base import DeployFacts


@dataclass(frozen=True)
class TensorSpec:
    """One engine input or output: name, numpy dtype name and shape with -1 for the batch axis."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass
class DeploySource:
    """An engine folder, read and checked for deployment."""

    engine_file: Path
    manifest: dict
    facts: DeployFacts  # the task's answers to what deploy asks (looked up once, in ``open_source``)

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def backend(self) -> str:
        return self.manifest["backend"]["name"]

    @property
    def engine_backend(self):
        """The backend package of the engine (its facts and hooks: ``edgeres.backends``)."""
        return backend_module(self.backend)

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    @property
    def preprocess(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.manifest["preprocess"])

    @property
    def max_batch(self) -> int:
        return int(self.manifest["input"].get("max_batch") or 1)

    @property
    def fixed_batch(self) -> int | None:
        """The batch the engine is fixed to, or None when its batch axis is dynamic (up to ``max_batch``)."""
        first = self.manifest["input"]["shape"][0]
        return int(first) if isinstance(first, int) and first > 0 else None

    @property
    def name(self) -> str:
        return self.engine_file.stem

    def decoding_settings(self) -> dict:
        """The manifest block the task's decoder reads (detectors: ``detection``); {} for a task without one.

        Raises:
            EdgeresError: the manifest lacks the block (an engine built by an older edgeres).
        """
        block = self.facts.settings_block
        if block is None:
            return {}
        if not self.manifest.get(block):
            raise EdgeresError(f"the engine manifest has no '{block}' block; rebuild the engine with this edgeres")
        return dict(self.manifest[block])

    def calibration_folder(self, override: Path | None = None) -> Path:
        """The INT8 engine's calibration folder (scales.json, model.fp32.onnx, model.qdq.onnx), checked."""
        calib = self.manifest.get("calibration") or {}
        folder = Path(override) if override is not None else Path(calib.get("folder", ""))
        scales = folder / "scales.json"
        if not scales.is_file():
            raise EdgeresError(
                f"the engine's calibration folder {folder} is missing (no scales.json); deploy needs "
                "its scales and ONNX files: copy it back or pass --calib DIR"
            )
        if calib.get("scales_sha256") and file_sha256(scales) != calib["scales_sha256"]:
            raise EdgeresError(
                f"{scales} is not the calibration this engine was built with (its sha256 differs from "
                "the manifest's); pass the right one with --calib DIR"
            )
        return folder


def open_source(target: Path) -> DeploySource:
    """Resolve and check an engine for deployment (file, manifest or folder).

    The bytes must match the manifest; this machine's ISA, GPU and backend version do not matter (the engine
    runs elsewhere), so only the hash and a stale checkpoint are refused here.
    """
    engine_file, manifest_file = resolve(Path(target))
    manifest = read_manifest(manifest_file)
    facts = get_task(manifest["task"]).deploy
    if facts is None:
        raise EdgeresError(
            f"deploy does not handle task '{manifest['task']}' yet; supported: {', '.join(deployable_tasks())}"
        )
    problems = _integrity_problems(engine_file, manifest)
    if problems:
        raise EdgeresError(f"cannot deploy {engine_file}: " + "; ".join(problems))
    return DeploySource(engine_file, manifest, facts)


def deployable_tasks(where=lambda facts: True) -> list[str]:
    """The tasks ``edgeres deploy`` handles (those whose ``Task.deploy`` is set), optionally only those whose
    deploy facts satisfy ``where`` (for messages naming which tasks an option applies to)."""
    found = []
    for name in task_names():
        facts = get_task(name).deploy
        if facts is not None and where(facts):
            found.append(name)
    return found


def _integrity_problems(engine_file: Path, manifest: dict) -> list[str]:
    """The engine file is the one the manifest describes, and its checkpoint did not change since."""
    if not engine_file.is_file():
        return [f"engine file {engine_file} is missing"]
    eng = manifest["engine"]
    problems = []
    if engine_file.stat().st_size != eng.get("size") or file_sha256(engine_file) != eng.get("sha256"):
        problems.append(
            f"{engine_file.name}'s bytes do not match its manifest: it was modified or replaced after the build"
        )
    source = manifest.get("source", {})
    ckpt = Path(source["checkpoint"]) if source.get("checkpoint") else None
    if ckpt is not None and ckpt.is_file() and source.get("sha256") and file_sha256(ckpt) != source["sha256"]:
        problems.append(f"stale: the checkpoint {ckpt} changed after this engine was built; rebuild it")
    return problems


def engine_io(src: DeploySource) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The engine's real inputs and outputs, as its backend reads them (the ONNX or OpenVINO model itself; a
    TensorRT plan's source ONNX beside it), else from the manifest."""
    found = src.engine_backend.model_io(src.engine_file, src.manifest)
    if found is None:
        return _manifest_io(src)
    inputs, outputs = found
    return [TensorSpec(*spec) for spec in inputs], [TensorSpec(*spec) for spec in outputs]


def onnx_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX file (a named or unknown dimension is -1)."""
    inputs, outputs = onnx_file_io(path)
    return [TensorSpec(*spec) for spec in inputs], [TensorSpec(*spec) for spec in outputs]


def _manifest_io(src: DeploySource) -> tuple[list[TensorSpec], list[TensorSpec]]:
    inp = src.manifest["input"]
    shape = tuple(int(d) for d in inp["shape"])
    h, w = src.preprocess.input_size
    out_shape = (-1, *src.facts.output_shape(len(src.class_names), (h, w)))
    outputs = [TensorSpec(name, "float32", out_shape) for name in src.manifest["outputs"]]
    return [TensorSpec(inp["name"], inp.get("dtype", "float32"), shape)], outputs

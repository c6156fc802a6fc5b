"""The runner interface every backend implements (after Polygraphy's ``backend/base/runner.py``).

Public methods do the checks and timing once; backends override the ``*_impl`` methods.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeres.errors import EdgeresError


class BaseRunner:
    """activate / infer / deactivate, usable as a context manager.

    Subclasses implement ``activate_impl``, ``infer_impl`` and ``deactivate_impl`` and set
    ``input_names``/``output_names`` in ``activate_impl``.
    """

    name = "base"

    def __init__(self, max_batch: int | None = None):
        self.is_active = False
        self.max_batch = max_batch
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        self.last_inference_time: float | None = None

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> None:
        if not self.is_active:
            self.activate_impl()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def infer(self, feed: dict[str, np.ndarray] | np.ndarray) -> OrderedDict[str, np.ndarray]:
        """Run one batch; an array is fed to the only input. Records ``last_inference_time`` (s).

        Raises:
            EdgeresError: the runner is not active, or the batch exceeds what the engine was built for.
        """
        if not self.is_active:
            raise EdgeresError(f"{self.name} runner is not active; use it as a context manager or call activate()")
        if isinstance(feed, np.ndarray):
            feed = {self.input_names[0]: feed}
        batch = next(iter(feed.values())).shape[0]
        if self.max_batch is not None and batch > self.max_batch:
            raise EdgeresError(f"batch {batch} is above the engine's maximum batch {self.max_batch}; "
                               "rebuild with a larger --max-batch")
        start = time.perf_counter()
        out = self.infer_impl(feed)
        self.last_inference_time = time.perf_counter() - start
        return out

    def activate_impl(self) -> None:
        raise NotImplementedError

    def infer_impl(self, feed: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        pass


# ---- what a backend's builder gets and gives (``backends.<x>.build``) ----


@dataclass
class BuildJob:
    """One engine build, prepared by ``edgeres.build`` for a backend's builder.

    The builder writes ``engine_file`` (and any file it keeps beside it) into ``folder``, a temporary folder that
    becomes the engine folder; it reads the model from ``exported`` (FP32/FP16 builds) or ``qdq`` (INT8/mixed).
    """

    cfg: Any  # edgeres.build.BuildConfig: the user's options
    config: Any  # edgeres.config.ModelConfig of the checkpoint
    folder: Path
    engine_file: Path
    export: dict  # the manifest's export facts (exporter, opset, output names, ...)
    exported: Path | None = None  # the FP32 ONNX export in ``folder`` (unquantized builds); the builder may move it
    calib: Any = None  # the calibration (quant.workflow result: scales, fp32_onnx, qdq_onnx, folder), quantized builds
    qdq: Any = None  # the TensorRT-form Q/DQ onnx.ModelProto to build from (mixed: with the plan's float layers)
    mixed: Any = None  # the mixed-precision plan, or None
    checked: Any = None  # what the backend's ``check_request`` / ``check_calibrated`` returned


@dataclass
class BuiltEngine:
    """What a builder reports for the manifest (``edgeres.build`` adds the common fields)."""

    backend_info: dict  # the manifest's ``backend`` block, besides name and version
    input_info: dict  # the manifest's ``input`` block
    preprocess: dict  # the manifest's ``preprocess`` block
    device: dict = field(default_factory=dict)  # added to the manifest's ``device`` block (GPU facts)
    extra: dict = field(default_factory=dict)  # further top-level manifest fields


def network_preprocess(config, normalize_in_network: bool) -> dict:
    """The manifest's pre-processing of an engine exported from ``config`` (uint8 NHWC input when the network
    normalizes itself)."""
    pre = config.preprocess.to_dict() | {"normalize_in_network": normalize_in_network}
    if normalize_in_network:
        pre["layout"] = "NHWC"
    return pre


def package_version(package: str, distributions: tuple[str, ...]) -> str | None:
    """The installed version of ``package`` (its ``__version__``, else its distribution's metadata), or None."""
    import importlib.metadata as md

    try:
        return __import__(package).__version__
    except ImportError:
        for dist in distributions:
            try:
                return md.version(dist)
            except md.PackageNotFoundError:
                continue
    return None


def nvidia_smi_gpus() -> list[dict]:
    """GPUs as nvidia-smi lists them (``device.gpu.parse_nvidia_smi`` rows; empty without nvidia-smi).

    Not ``device.gpu.gpu_facts``: that also asks torch about CUDA, and importing torch costs seconds on every
    ``predict``/``bench`` (more on a Jetson) only to check an engine's manifest.
    """
    import shutil
    import subprocess

    from edgeres.device.gpu import parse_nvidia_smi

    if not shutil.which("nvidia-smi"):
        return []
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(proc.stdout) if proc.returncode == 0 else []


def host_gpu_facts() -> dict:
    """The first GPU nvidia-smi lists, as the manifest's device block names it (empty without one)."""
    gpus = nvidia_smi_gpus()
    return {"gpu": gpus[0].get("name"), "compute_capability": gpus[0].get("compute_cap")} if gpus else {}


def cpu_engine_problems(manifest: dict, current: dict) -> list[str]:
    """Why a CPU engine (ONNX Runtime, OpenVINO) cannot be used here: another version of its runtime, another GPU
    recorded at build time, or (INT8) a build for CPUs that sum int8 products in 32 bits."""
    from edgeres.backends.cpu_int8 import target_problems

    backend, device = manifest["backend"], manifest.get("device", {})
    problems = []
    if current.get("backend_version") != backend.get("version"):
        problems.append(f"built with {backend['name']} {backend.get('version')}, this machine has "
                        f"{current.get('backend_version') or 'none installed'}")
    gpu_differs = (device.get("gpu"), device.get("compute_capability")) != (current.get("gpu"),
                                                                          current.get("compute_capability"))
    if device.get("gpu") and gpu_differs:
        problems.append(f"built for GPU {device.get('gpu')} (sm {device.get('compute_capability')}), this machine "
                        f"has {current.get('gpu') or 'no GPU'} (sm {current.get('compute_capability')})")
    if "int8_cpu_facts" in current:
        problems += target_problems(backend["name"], backend.get("int8_cpu"), current["int8_cpu_facts"], env={},
                                    saturation_free=bool(backend.get("saturation_free")))
    return problems

"""OpenVINO backend: the INT8 CPU engine on x86 (oneDNN int8 kernels: VNNI, AMX), run from the Q/DQ artifact.

``loader`` (compile, execution-graph checks, the engine file), ``runner`` and ``builder``. The table facts and hooks
below are what ``edgeres.backends`` promises for every engine backend; ``openvino`` is optional and imported only
inside the functions that need it.
"""

from __future__ import annotations

NAME = "openvino"
ENGINE_SUFFIX = ".onnx"
PRECISIONS = ("int8",)
PACKAGE = "openvino"
DISTRIBUTIONS = ("openvino",)
EXTRA = "openvino"
ON_GPU = False
CPU_INT8 = True


def version() -> str | None:
    from edgeres.backends.base import package_version

    return package_version(PACKAGE, DISTRIBUTIONS)


def ready() -> bool:
    import importlib.util

    return importlib.util.find_spec(PACKAGE) is not None


def check_request(cfg) -> None:
    """Refuse what this engine cannot build and check OpenVINO is installed, before any calibration."""
    from edgeres.backends.openvino.loader import openvino
    from edgeres.errors import EdgeresError

    if cfg.precision not in PRECISIONS:
        raise EdgeresError(
            f"--backend openvino builds INT8 engines only (--precision int8); for "
            f"--precision {cfg.precision} use --backend onnxruntime"
        )
    openvino()  # installed? (before minutes of calibration)


def check_calibrated(cfg, calib, mixed, checked):
    return checked


def build(job):
    from edgeres.backends.openvino.builder import build_engine_file

    return build_engine_file(job)


def current_facts() -> dict:
    """This machine's facts an OpenVINO engine depends on, besides the CPU ISA and OpenVINO's version (the CPU as
    oneDNN sees it: ``ONEDNN_MAX_CPU_ISA`` may cap it below VNNI)."""
    from edgeres.backends.base import host_gpu_facts
    from edgeres.backends.cpu_int8 import kernel_facts
    from edgeres.device.cpu import cpu_facts

    return host_gpu_facts() | {"int8_cpu_facts": kernel_facts(NAME, cpu_facts())}


def engine_problems(manifest: dict, current: dict) -> list[str]:
    from edgeres.backends.base import cpu_engine_problems

    return cpu_engine_problems(manifest, current)


def open_runner(engine_file, manifest: dict, threads=None, **_):
    """An inactive runner for a checked engine."""
    from edgeres.backends.openvino.loader import ModelLoader
    from edgeres.backends.openvino.runner import OpenVinoRunner

    loader = ModelLoader(
        engine_file, threads=threads, precision_hint=manifest["backend"].get("inference_precision", "f32")
    )
    return OpenVinoRunner(loader, max_batch=manifest["input"].get("max_batch"))


def describe(manifest: dict) -> list[str]:
    """Lines ``edgeres build`` prints about a fresh engine, besides the common ones (none here)."""
    return []

"""ONNX Runtime backend: the embedded default on any CPU; CUDA/TensorRT execution providers when asked.

``loader`` (sessions, optimized files), ``runner`` and ``builder`` (FP32 and INT8 engines). The table facts and
hooks below are what ``edgeres.backends`` promises for every engine backend; onnxruntime is imported only inside
the functions that use it.
"""

from __future__ import annotations

NAME = "onnxruntime"
ENGINE_SUFFIX = ".onnx"
PRECISIONS = ("fp32", "int8", "mixed")
PACKAGE = "onnxruntime"
DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")
EXTRA = "desktop"
ON_GPU = False
CPU_INT8 = True
TENSORRT_PLAN = False  # the engine file is a serialized TensorRT engine (DeepStream's nvinfer loads it as is)
TRITON_MODEL = ("model.onnx", 'platform: "onnxruntime_onnx"')  # Triton: file in the version folder, config line


def version() -> str | None:
    from edgeres.backends.base import package_version

    return package_version(PACKAGE, DISTRIBUTIONS)


def ready() -> bool:
    import importlib.util

    return importlib.util.find_spec(PACKAGE) is not None


def check_request(cfg) -> None:
    """Refuse what this engine cannot build, before any calibration."""
    from edgeres.errors import EdgeresError

    if cfg.precision == "fp16":
        raise EdgeresError(
            "FP16 needs a GPU: the ONNX Runtime CPU engine would silently run FP32; "
            "build --precision fp32 here, or FP16 with --backend tensorrt on a GPU machine"
        )


def check_calibrated(cfg, calib, mixed, checked):
    return checked


def build(job):
    from edgeres.backends.onnxrt.builder import build_engine_file

    return build_engine_file(job)


def current_facts() -> dict:
    """This machine's facts an ONNX Runtime engine depends on, besides the CPU ISA and the runtime's version."""
    from edgeres.backends.base import host_gpu_facts
    from edgeres.backends.cpu_int8 import kernel_facts
    from edgeres.device.cpu import cpu_facts

    return host_gpu_facts() | {"int8_cpu_facts": kernel_facts(NAME, cpu_facts())}


def engine_problems(manifest: dict, current: dict) -> list[str]:
    from edgeres.backends.base import cpu_engine_problems

    return cpu_engine_problems(manifest, current)


def open_runner(engine_file, manifest: dict, threads=None, providers=None, spinning: bool = True, **_):
    """An inactive runner for a checked engine (INT8 engines get the session settings this CPU needs)."""
    from edgeres.backends.onnxrt.loader import SessionLoader, int8_session_config
    from edgeres.backends.onnxrt.runner import OnnxRuntimeRunner

    session_config = dict(manifest["backend"].get("session_config", {}))
    if manifest["precision"] in ("int8", "mixed"):
        session_config.update(int8_session_config(bool(manifest["backend"].get("saturation_free"))))
    loader = SessionLoader(
        engine_file,
        providers=providers,
        threads=threads,
        spinning=spinning,
        opt_level=manifest["backend"].get("runtime_opt_level", "all"),
        session_config=session_config,
    )
    return OnnxRuntimeRunner(loader, max_batch=manifest["input"].get("max_batch"))


def describe(manifest: dict) -> list[str]:
    """Lines ``edgeres build`` prints about a fresh engine, besides the common ones (none here)."""
    return []


def source_onnx(engine_file, manifest: dict):
    """The ONNX beside the engine that TensorRT can build from: a mixed engine's Q/DQ file (the engine file itself
    holds ONNX Runtime's CPU-only operators), else None."""
    from pathlib import Path

    return Path(engine_file).parent / (Path(engine_file).stem + ".qdq.onnx") if manifest["precision"] == "mixed" \
        else None


def model_io(engine_file, manifest: dict):
    """The engine's inputs and outputs as (name, numpy dtype name, shape with -1 for unknown dimensions)."""
    from edgeres.onnx_model.graph import onnx_file_io

    return onnx_file_io(engine_file)


def write_triton_model(engine_file, target) -> None:
    """The engine as Triton's ONNX Runtime backend loads it: the file itself."""
    import shutil

    shutil.copyfile(engine_file, target)

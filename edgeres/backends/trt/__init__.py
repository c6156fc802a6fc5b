"""TensorRT backend: ``loader`` (build from ONNX, deserialize checked bytes), ``runner`` (CUDA buffers, stream,
events), ``builder`` (the engine build: source ONNX, calibration cache, plan, trtexec command), ``calibrator``
(implicit INT8 from edgeres' cache), ``buffers`` (cuda-python or pycuda) and ``versions`` (every difference
between TensorRT 8.6, 10.x and 11.x). tensorrt, cuda-python and pycuda are imported lazily.

The table facts and hooks below are what ``edgeres.backends`` promises for every engine backend."""

from __future__ import annotations

NAME = "tensorrt"
ENGINE_SUFFIX = ".plan"
PRECISIONS = ("fp32", "fp16", "int8", "mixed")
PACKAGE = "tensorrt"
DISTRIBUTIONS = ("tensorrt", "tensorrt-gpu")
EXTRA = "tensorrt"
ON_GPU = True
TENSORRT_PLAN = True  # the engine file is a serialized TensorRT engine (DeepStream's nvinfer loads it as is)
TRITON_MODEL = ("model.plan", 'platform: "tensorrt_plan"')  # Triton: file in the version folder, config line
CPU_INT8 = False
AUTO_REASON = "auto: TensorRT and an NVIDIA GPU are present"


def version() -> str | None:
    from edgeres.backends.base import package_version

    return package_version(PACKAGE, DISTRIBUTIONS)


def ready() -> bool:
    """TensorRT is installed and a GPU is present (``auto`` builds TensorRT engines then)."""
    import importlib.util

    from edgeres.device.gpu import gpu_facts

    return importlib.util.find_spec(PACKAGE) is not None and bool(gpu_facts().get("gpus"))


def check_request(cfg):
    """Before calibration or sensitivity analysis (minutes): TensorRT installed, and the request one this TensorRT
    and GPU accept (e.g. DLA rules). A build from a given ``--calib`` checks its Q/DQ artifact first instead."""
    if cfg.calib is None or cfg.precision == "mixed":
        from edgeres.backends.trt.builder import check_build_request
        from edgeres.backends.trt.runner import check_tensorrt_available

        check_tensorrt_available()
        return check_build_request(cfg)
    return None


def check_calibrated(cfg, calib, mixed, checked):
    """Once the calibration exists: its Q/DQ artifact follows TensorRT's rules, then the checks of
    ``check_request`` (version, device and option conflicts) if not done yet, all before the export."""
    from edgeres.backends.trt.builder import check_build_request, check_qdq_for_tensorrt
    from edgeres.backends.trt.runner import check_tensorrt_available

    if calib is not None and mixed is None:
        check_qdq_for_tensorrt(calib.qdq_onnx)
    check_tensorrt_available()
    return checked or check_build_request(cfg)


def build(job):
    from edgeres.backends.trt.builder import build_engine_file

    return build_engine_file(job)


def current_facts() -> dict:
    """The CUDA runtime's GPU names, as recorded at build time; L4T; DLA cores."""
    from edgeres.backends.trt.loader import trt_current_facts

    return trt_current_facts()


def engine_problems(manifest: dict, current: dict) -> list[str]:
    """Version-compatible / hardware-compatible engines, L4T, DLA, GPU (``versions.compat_problems``)."""
    from edgeres.backends.trt.versions import compat_problems

    return compat_problems(manifest, current)


def open_runner(engine_file, manifest: dict, cuda_graph: bool = False, **_):
    """An inactive runner for a checked engine."""
    from edgeres.backends.trt.runner import TensorRTRunner

    return TensorRTRunner(
        engine_file, max_batch=manifest["input"].get("max_batch"), manifest=manifest, cuda_graph=cuda_graph
    )


def describe(manifest: dict) -> list[str]:
    """Lines ``edgeres build`` prints about a fresh engine: layer precisions, DLA placement, warnings."""
    from edgeres.backends.trt.loader import describe_build

    return describe_build(manifest)


def source_onnx(engine_file, manifest: dict):
    """The ONNX the plan was built from, kept beside it (the manifest names it), or None for an older build."""
    from pathlib import Path

    recorded = manifest["backend"].get("source_onnx")
    return Path(engine_file).parent / recorded if recorded else None


def model_io(engine_file, manifest: dict):
    """The plan's inputs and outputs as (name, numpy dtype name, shape), read from its source ONNX (a plan is not
    readable without TensorRT); None when that file is gone."""
    from edgeres.onnx_model.graph import onnx_file_io

    source = source_onnx(engine_file, manifest)
    return onnx_file_io(source) if source is not None and source.is_file() else None


def write_triton_model(engine_file, target) -> None:
    """The plan as Triton's TensorRT backend loads it: the file itself."""
    import shutil

    shutil.copyfile(engine_file, target)

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
TENSORRT_PLAN = False  # the engine file is a serialized TensorRT engine (DeepStream's nvinfer loads it as is)
TRITON_MODEL = ("model.xml", 'backend: "openvino"\ndefault_model_filename: "model.xml"')  # Triton: file, config


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


def source_onnx(engine_file, manifest: dict):
    """No ONNX beside the engine for TensorRT (INT8 only: the calibration folder's Q/DQ artifact is the source)."""
    return None


def model_io(engine_file, manifest: dict):
    """The engine's inputs and outputs as (name, numpy dtype name, shape with -1 for unknown dimensions), as
    OpenVINO reads the model."""
    import numpy as np

    from edgeres.backends.openvino.loader import openvino

    model = openvino().Core().read_model(str(engine_file))

    def spec(port):
        shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
        return port.get_any_name(), np.dtype(port.get_element_type().to_dtype()).name, shape

    return [spec(p) for p in model.inputs], [spec(p) for p in model.outputs]


def write_triton_model(engine_file, target) -> None:
    """The engine as Triton's OpenVINO backend loads it: OpenVINO IR (``target`` .xml, its .bin beside it), weights
    kept as they are (no FP16 compression)."""
    from edgeres.backends.openvino.loader import openvino

    ov = openvino()
    ov.save_model(ov.Core().read_model(str(engine_file)), str(target), compress_to_fp16=False)

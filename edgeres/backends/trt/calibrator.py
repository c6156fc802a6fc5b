"""Implicit INT8 (TensorRT <= 10): a calibrator that only serves a calibration cache.

The cache is written by ``edgeres.quant.trt_cache.write_cache`` from the scales JSON, so TensorRT never
calibrates by itself: ``get_batch`` has no data to give. Before the build, ``check_cache`` refuses a
cache written for another TensorRT version or another model, with a message saying what to do.
"""

from __future__ import annotations

from pathlib import Path

from edgeres.errors import EdgeresError
from edgeres.quant.trt_cache import ALGORITHM, read_cache, trt_version_code


def version_from_code(code: int) -> str:
    """8601 -> '8.6.1', 100300 -> '10.3.0' (the inverse of ``trt_version_code``)."""
    if code >= 100000:
        return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
    return f"{code // 1000}.{code // 100 % 10}.{code % 100}"


def check_cache(path: Path, trt_version: str, tensor_names: set[str]) -> dict[str, float]:
    """Read a calibration cache and check it fits this TensorRT version and this network.

    Args:
        path: the cache file.
        trt_version: the installed TensorRT's version.
        tensor_names: every tensor name of the ONNX the engine is built from.

    Returns:
        ``{tensor: scale}`` of the cache.

    Raises:
        EdgeresError: not a cache, another TensorRT version or algorithm, or tensors this network lacks.
    """
    header, table = read_cache(Path(path))
    want = f"TRT-{trt_version_code(trt_version)}-{ALGORITHM}"
    parts = header.split("-", 2)
    if header != want:
        if len(parts) == 3 and parts[1].isdigit() and parts[2] == ALGORITHM:
            raise EdgeresError(
                f"calibration cache {path} was written for TensorRT {version_from_code(int(parts[1]))}, this is "
                f"TensorRT {trt_version}; rewrite it from the scales JSON (edgeres calibrate --trt-version "
                f"{trt_version}) or build from the Q/DQ ONNX (--int8-from qdq)"
            )
        raise EdgeresError(
            f"calibration cache {path} has header '{header}', expected '{want}' "
            f"(TensorRT {trt_version}, {ALGORITHM}); rewrite it from the scales JSON"
        )
    if not table:
        raise EdgeresError(f"calibration cache {path} holds no scales")
    unknown = sorted(set(table) - set(tensor_names))
    if unknown:
        raise EdgeresError(
            f"calibration cache {path} is for another model: {len(unknown)} of its {len(table)} tensors are not in "
            f"this network (e.g. {', '.join(unknown[:3])}); recalibrate this model with 'edgeres calibrate'"
        )
    return table


def make_calibrator(trt, cache: bytes, batch_size: int = 1):
    """An ``IInt8EntropyCalibrator2`` whose only answer is ``cache`` (keep it alive until the build ends)."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache = cache

        def get_algorithm(self):
            return trt.CalibrationAlgoType.ENTROPY_CALIBRATION_2

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):  # every scale is in the cache: TensorRT has nothing to calibrate
            return None

        def read_calibration_cache(self):
            return self.cache

        def write_calibration_cache(self, cache):
            return None

    return CacheCalibrator()

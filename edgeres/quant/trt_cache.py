"""TensorRT calibration caches (implicit INT8, TensorRT <= 10 and DLA), written from the scales JSON.

Text format: a ``TRT-<version>-<Algorithm>`` header, then ``tensor_name: <hex of float32 scale>``
lines (big-endian IEEE-754, as TensorRT writes them). Keys are tensor names of the FP32 ONNX that
an implicit build parses. Implicit mode recomputes weight scales itself (per-channel max), so MSE,
percentile and QAT weight choices only survive in the Q/DQ path.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from edgeres.errors import EdgeresError
from edgeres.fileio import write_text_atomic
from edgeres.quant.scales import Scales

ALGORITHM = "EntropyCalibration2"  # the calibrator class edgeres hands the cache to on the device


def trt_version_code(version: str) -> int:
    """'8.6.1' -> 8601 and '10.3.0' -> 100300: NV_TENSORRT_VERSION as it appears in cache headers."""
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)*", version.strip())
    if not m:
        raise EdgeresError(f"TensorRT version '{version}' is not like 8.6.1 or 10.3.0")
    major, minor, patch = int(m[1]), int(m[2]), int(m[3] or 0)
    return major * 1000 + minor * 100 + patch if major < 10 else major * 10000 + minor * 100 + patch


def cache_header(trt_version: str) -> str:
    """The cache's first line for ``trt_version``; refuses TensorRT 11 (no implicit INT8) and malformed versions."""
    major = trt_version.strip().split(".")[0]
    if major.isdigit() and int(major) >= 11:
        raise EdgeresError("TensorRT 11 has no implicit INT8 (no calibration caches); build from the Q/DQ ONNX")
    return f"TRT-{trt_version_code(trt_version)}-{ALGORITHM}"


def write_cache(scales: Scales, trt_version: str, path: Path) -> None:
    """Write every activation scale as a TensorRT calibration cache for ``trt_version``."""
    lines = [cache_header(trt_version)]
    for name, entry in scales.activations.items():
        lines.append(f"{name}: {struct.pack('>f', entry['amax'] / 127.0).hex()}")
    write_text_atomic(Path(path), "\n".join(lines) + "\n")


def read_cache(path: Path) -> tuple[str, dict[str, float]]:
    """(header, {tensor: scale}) of a TensorRT calibration cache."""
    lines = Path(path).read_text().splitlines()
    if not lines or not lines[0].startswith("TRT-"):
        raise EdgeresError(f"{path} is not a TensorRT calibration cache (no 'TRT-<version>-<algorithm>' header)")
    table = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        name, _, value = line.rpartition(": ")
        try:
            table[name] = struct.unpack(">f", bytes.fromhex(value.strip()))[0]
        except ValueError:
            raise EdgeresError(f"{path}: bad cache line '{line[:80]}'") from None
    return lines[0], table

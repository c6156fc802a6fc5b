"""CUDA buffers without a GPU: pinned-memory views, binding choice, and the error a machine without a driver gets."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from edgeres.backends.trt import buffers
from edgeres.errors import EdgeresError


def test_host_array_views_memory_at_a_pointer():
    raw = (ctypes.c_byte * 48)()
    view = buffers.host_array(ctypes.addressof(raw), (2, 3, 2), np.float32)
    view[:] = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    assert bytes(raw)[:8] == np.array([0, 1], np.float32).tobytes()
    half = buffers.host_array(ctypes.addressof(raw), (4,), np.float16)  # dtypes ctypes has no type for
    assert half.dtype == np.float16 and half.shape == (4,)


def test_unknown_binding_is_refused():
    with pytest.raises(EdgeresError, match="accepted: cuda-python, pycuda"):
        buffers.load_cuda("numba")


def test_cuda_python_errors_say_what_failed():
    runtime = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (cuda-bindings) is not installed")
    err, count = runtime.cudaGetDeviceCount()
    if err == runtime.cudaError_t.cudaSuccess and count > 0:
        pytest.skip("this machine has a CUDA device")
    api = buffers.CudaPython(runtime)
    with pytest.raises(EdgeresError, match=r"CUDA cudaStreamCreate failed: .*\(cuda"):
        api.stream()
    status = buffers.cuda_status("cuda-python")
    assert status["binding"] == "cuda-python" and status["device"] is None
    assert status["error"].startswith("CUDA cudaGetDeviceCount failed")

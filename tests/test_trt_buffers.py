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


class CaptureRuntime:
    """A double of cuda-python's runtime module for the capture calls only (no CUDA here): every call answers
    success unless ``end_error`` says how ``cudaStreamEndCapture`` fails; the calls are recorded."""

    class cudaError_t:
        cudaSuccess = 0
        cudaErrorStreamCaptureInvalidated = 901

    class cudaStreamCaptureMode:
        cudaStreamCaptureModeThreadLocal = 1

    def __init__(self, end_error: int = 0):
        self.end_error = end_error
        self.calls: list[str] = []

    def cudaStreamBeginCapture(self, stream, mode):
        self.calls.append("begin")
        return (0,)

    def cudaStreamEndCapture(self, stream):
        self.calls.append("end")
        return (self.end_error, None if self.end_error else "graph")

    def cudaGraphInstantiate(self, graph, flags):
        self.calls.append("instantiate")
        return (0, "graph_exec")

    def cudaGraphDestroy(self, graph):
        self.calls.append(f"destroy {graph}")
        return (0,)

    def cudaGetLastError(self):
        self.calls.append("clear error")
        return (0,)

    def cudaGetErrorString(self, err):
        return (0, b"operation not permitted when stream is capturing")


def test_capture_returns_the_instantiated_graph():
    rt = CaptureRuntime()
    assert buffers.CudaPython(rt).capture("s", lambda: True) == "graph_exec"
    assert rt.calls == ["begin", "end", "instantiate", "destroy graph"]


def test_capture_refused_by_tensorrt_is_dropped():
    rt = CaptureRuntime()
    with pytest.raises(EdgeresError, match=r"during CUDA-graph capture \(execute_async_v3 returned False\)"):
        buffers.CudaPython(rt).capture("s", lambda: False)
    assert rt.calls == ["begin", "end", "destroy graph", "clear error"]  # nothing instantiated


def test_end_capture_error_does_not_hide_the_enqueue_error():
    rt = CaptureRuntime(end_error=CaptureRuntime.cudaError_t.cudaErrorStreamCaptureInvalidated)

    def enqueue():
        raise RuntimeError("enqueue failed inside the capture")

    with pytest.raises(RuntimeError, match="enqueue failed inside the capture"):
        buffers.CudaPython(rt).capture("s", enqueue)
    assert rt.calls == ["begin", "end", "clear error"]

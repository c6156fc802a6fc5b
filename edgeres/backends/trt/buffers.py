"""CUDA memory, streams, events and graphs for the TensorRT runner, through cuda-python or pycuda.

cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` before cuda-python 12.6) is preferred: it is
in the ``tensorrt`` extra and on JetPack's pip index. pycuda is used when only it is installed (many
Jetson setups have it); CUDA-graph capture needs cuda-python. Both are imported lazily.
"""

from __future__ import annotations

import ctypes

import numpy as np

from edgeres.errors import EdgeresError, MissingDependencyError

BACKENDS = ("cuda-python", "pycuda")


def host_array(ptr: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A numpy view of ``nbytes`` of host memory at ``ptr`` (pinned memory from cudaMallocHost)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buf = (ctypes.c_byte * nbytes).from_address(ptr)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def import_cudart():
    """cuda-python's runtime module (new or old location), or None."""
    try:
        from cuda.bindings import runtime

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart

        return cudart
    except ImportError:
        return None


class CudaPython:
    """The CUDA runtime API through cuda-python. Every call's error code is checked."""

    name = "cuda-python"

    def __init__(self, cudart=None):
        self.rt = cudart or import_cudart()
        if self.rt is None:
            raise MissingDependencyError(
                "cuda-python is not installed; install it with: pip install 'edgeres[tensorrt]'"
            )

    def _call(self, what: str, result):
        result = result if isinstance(result, tuple) else (result,)
        err, values = result[0], result[1:]
        if err != self.rt.cudaError_t.cudaSuccess:
            _, text = self.rt.cudaGetErrorString(err)
            text = text.decode() if isinstance(text, bytes) else str(text)
            raise EdgeresError(f"CUDA {what} failed: {text} ({getattr(err, 'name', err)})")
        return values[0] if len(values) == 1 else (values or None)

    def device(self) -> dict:
        """Name, compute capability and count of CUDA devices (device 0 described)."""
        count = self._call("cudaGetDeviceCount", self.rt.cudaGetDeviceCount())
        props = self._call("cudaGetDeviceProperties", self.rt.cudaGetDeviceProperties(0))
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return {"count": count, "name": name.strip("\x00 "), "compute_capability": f"{props.major}.{props.minor}"}

    def malloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", self.rt.cudaMalloc(max(nbytes, 1))))

    def free(self, ptr: int) -> None:
        self._call("cudaFree", self.rt.cudaFree(ptr))

    def host_empty(self, shape, dtype) -> np.ndarray:
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        ptr = int(self._call("cudaMallocHost", self.rt.cudaMallocHost(nbytes)))
        return host_array(ptr, tuple(shape), dtype)

    def free_host(self, array: np.ndarray) -> None:
        self._call("cudaFreeHost", self.rt.cudaFreeHost(array.ctypes.data))

    def stream(self):
        return self._call("cudaStreamCreate", self.rt.cudaStreamCreate())

    def handle(self, stream) -> int:
        return int(stream)

    def destroy_stream(self, stream) -> None:
        self._call("cudaStreamDestroy", self.rt.cudaStreamDestroy(stream))

    def synchronize(self, stream) -> None:
        self._call("cudaStreamSynchronize", self.rt.cudaStreamSynchronize(stream))

    def h2d(self, dst: int, src: np.ndarray, nbytes: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", self.rt.cudaMemcpyAsync(dst, src.ctypes.data, nbytes, kind, stream))

    def d2h(self, dst: np.ndarray, src: int, nbytes: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", self.rt.cudaMemcpyAsync(dst.ctypes.data, src, nbytes, kind, stream))

    def event(self):
        return self._call("cudaEventCreate", self.rt.cudaEventCreate())

    def record(self, event, stream) -> None:
        self._call("cudaEventRecord", self.rt.cudaEventRecord(event, stream))

    def elapsed_ms(self, start, end) -> float:
        return float(self._call("cudaEventElapsedTime", self.rt.cudaEventElapsedTime(start, end)))

    def destroy_event(self, event) -> None:
        self._call("cudaEventDestroy", self.rt.cudaEventDestroy(event))

    def capture(self, stream, enqueue) -> object:
        """Capture what ``enqueue()`` puts on ``stream`` into an executable CUDA graph.

        ``enqueue`` returns False (TensorRT's ``execute_async_v3`` does when it cannot enqueue, e.g. an operation
        not allowed under capture) or raises: then the capture is ended and its partial graph destroyed, the CUDA
        error state cleared, and the failure raised; an error from ending the capture never hides it (as
        trtexec's ``endCaptureOnError``).

        Raises:
            EdgeresError: the capture failed (nothing is returned to replay).
        """
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._call("cudaStreamBeginCapture", self.rt.cudaStreamBeginCapture(stream, mode))
        try:
            ok = enqueue()
        except BaseException:
            self._end_capture_on_error(stream)
            raise
        if ok is False:
            self._end_capture_on_error(stream)
            raise EdgeresError(
                "TensorRT could not enqueue the engine during CUDA-graph capture (execute_async_v3 returned False)"
            )
        graph = self._call("cudaStreamEndCapture", self.rt.cudaStreamEndCapture(stream))
        try:
            graph_exec = self._call("cudaGraphInstantiate", self.rt.cudaGraphInstantiate(graph, 0))
        finally:
            self._call("cudaGraphDestroy", self.rt.cudaGraphDestroy(graph))
        return graph_exec

    def _end_capture_on_error(self, stream) -> None:
        """End a failed capture without raising: destroy what it captured, clear the sticky error."""
        result = self.rt.cudaStreamEndCapture(stream)
        result = result if isinstance(result, tuple) else (result,)
        if result[0] == self.rt.cudaError_t.cudaSuccess and len(result) > 1:  # TensorRT refused: a graph was made
            self.rt.cudaGraphDestroy(result[1])
        self.rt.cudaGetLastError()  # an invalidated capture leaves an error that the next call would report

    def launch(self, graph_exec, stream) -> None:
        self._call("cudaGraphLaunch", self.rt.cudaGraphLaunch(graph_exec, stream))

    def destroy_graph(self, graph_exec) -> None:
        self._call("cudaGraphExecDestroy", self.rt.cudaGraphExecDestroy(graph_exec))

    def close(self) -> None:
        pass


class PyCuda:
    """The same operations through pycuda, on device 0's primary context (pushed here, popped in ``close``)."""

    name = "pycuda"

    def __init__(self):
        try:
            import pycuda.driver as cuda
        except ImportError:
            raise MissingDependencyError(
                "neither cuda-python nor pycuda is installed; install cuda-python with: pip install 'edgeres[tensorrt]'"
            ) from None
        self.cuda = cuda
        try:
            cuda.init()
            self.ctx = cuda.Device(0).retain_primary_context()
            self.ctx.push()
        except cuda.Error as exc:
            raise EdgeresError(f"CUDA initialisation through pycuda failed: {exc}") from None
        self._allocations: dict[int, object] = {}

    def device(self) -> dict:
        dev = self.cuda.Device(0)
        major, minor = dev.compute_capability()
        return {"count": self.cuda.Device.count(), "name": dev.name(), "compute_capability": f"{major}.{minor}"}

    def malloc(self, nbytes: int) -> int:
        alloc = self.cuda.mem_alloc(max(nbytes, 1))
        self._allocations[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        self._allocations.pop(ptr).free()

    def host_empty(self, shape, dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))

    def free_host(self, array: np.ndarray) -> None:
        base = getattr(array, "base", None)
        if base is not None and hasattr(base, "free"):
            base.free()

    def stream(self):
        return self.cuda.Stream()

    def handle(self, stream) -> int:
        return int(stream.handle)

    def destroy_stream(self, stream) -> None:
        pass

    def synchronize(self, stream) -> None:
        stream.synchronize()

    def h2d(self, dst: int, src: np.ndarray, nbytes: int, stream) -> None:
        self.cuda.memcpy_htod_async(dst, src.reshape(-1).view(np.uint8)[:nbytes], stream)

    def d2h(self, dst: np.ndarray, src: int, nbytes: int, stream) -> None:
        self.cuda.memcpy_dtoh_async(dst.reshape(-1).view(np.uint8)[:nbytes], src, stream)

    def event(self):
        return self.cuda.Event()

    def record(self, event, stream) -> None:
        event.record(stream)

    def elapsed_ms(self, start, end) -> float:
        return float(start.time_till(end))

    def destroy_event(self, event) -> None:
        pass

    def capture(self, stream, enqueue):
        raise EdgeresError("CUDA-graph capture needs cuda-python (pip install 'edgeres[tensorrt]'); pycuda is in use")

    def launch(self, graph_exec, stream) -> None:
        raise EdgeresError("CUDA graphs need cuda-python")

    def destroy_graph(self, graph_exec) -> None:
        pass

    def close(self) -> None:
        for alloc in self._allocations.values():
            alloc.free()
        self._allocations.clear()
        self.ctx.pop()


def load_cuda(prefer: str | None = None):
    """The CUDA API to use: cuda-python if installed (or ``prefer``), else pycuda.

    Raises:
        MissingDependencyError: neither is installed (names the extra).
        EdgeresError: ``prefer`` is not one of ``BACKENDS``.
    """
    if prefer not in (None, *BACKENDS):
        raise EdgeresError(f"unknown CUDA binding '{prefer}'; accepted: {', '.join(BACKENDS)}")
    if prefer == "pycuda":
        return PyCuda()
    if prefer == "cuda-python" or import_cudart() is not None:
        return CudaPython()
    return PyCuda()


def cuda_status(prefer: str | None = None) -> dict:
    """What ``doctor`` and the self-test report: the binding in use and device 0, or why CUDA cannot be used.

    Returns:
        ``{"binding": str | None, "device": dict | None, "error": str | None}``; never raises.
    """
    try:
        api = load_cuda(prefer)
    except EdgeresError as exc:
        return {"binding": None, "device": None, "error": str(exc)}
    try:
        return {"binding": api.name, "device": api.device(), "error": None}
    except EdgeresError as exc:
        return {"binding": api.name, "device": None, "error": str(exc)}
    finally:
        api.close()

"""Runs a TensorRT engine: pinned host and device buffers, one stream, asynchronous execution, CUDA events.

Each ``infer`` records four events (before the host-to-device copy, before and after the engine, after
the device-to-host copy), so ``last_device_times`` holds the GPU compute time apart from the copies, as
trtexec reports it; ``last_inference_time`` (from the base class) is the end-to-end host time. With
``cuda_graph=True`` the engine's kernels for each batch size are captured once into a CUDA graph and
replayed (lower batch-1 latency).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from edgeres.backends.base import BaseRunner
from edgeres.errors import EdgeresError, require


def check_tensorrt_available() -> None:
    """Raise a clear error when TensorRT cannot be imported (the `tensorrt` extra, or JetPack's)."""
    require("tensorrt", "tensorrt")


def _sidecar_manifest(engine_path: Path) -> dict:
    """The manifest beside an engine (``NAME.manifest.json``), for a runner made without ``open_engine``."""
    import json

    manifest_file = engine_path.with_name(engine_path.stem + ".manifest.json")
    if not manifest_file.is_file():
        raise EdgeresError(f"{engine_path} has no manifest ({manifest_file.name}); edgeres only loads engines it can "
                           "check: rebuild it with 'edgeres build'")
    try:
        manifest = json.loads(manifest_file.read_text())
        return {"engine": manifest["engine"], "backend": manifest["backend"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgeresError(f"cannot read engine manifest {manifest_file}: {exc}") from None


class TensorRTRunner(BaseRunner):
    """Runner over a TensorRT engine file whose bytes match its manifest.

    Args:
        engine_path: the ``.plan`` file (its manifest must lie beside it).
        max_batch: the largest batch accepted (the engine's profile maximum).
        cuda_graph: replay captured CUDA graphs instead of enqueueing the engine on each call.
        cuda_binding: "cuda-python" or "pycuda" (default: cuda-python if installed).
        manifest: the engine's checked manifest (``open_engine`` passes it); default: read the one beside it.
    """

    name = "tensorrt"

    def __init__(self, engine_path, max_batch: int | None = None, cuda_graph: bool = False,
                 cuda_binding: str | None = None, manifest: dict | None = None):
        super().__init__(max_batch=max_batch)
        self.engine_path = Path(engine_path)
        self.manifest = manifest
        self.cuda_graph = cuda_graph
        self.cuda_binding = cuda_binding
        self.last_device_times: dict | None = None
        self._reset()

    def _reset(self) -> None:
        self.cuda = self.runtime = self.engine = self.context = self.stream = None
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, int] = {}
        self.events: list = []
        self.graphs: dict[int, object] = {}

    def activate_impl(self) -> None:
        from edgeres.backends.trt.buffers import load_cuda
        from edgeres.backends.trt.loader import deserialize, load_plan

        manifest = self.manifest or _sidecar_manifest(self.engine_path)
        plan = load_plan(self.engine_path, manifest["engine"].get("sha256"))  # hashed bytes are deserialized bytes
        backend = manifest["backend"]
        trt = require("tensorrt", "tensorrt")
        self.cuda = load_cuda(self.cuda_binding)
        try:
            self.runtime, self.engine = deserialize(plan, backend, trt)
            self.context = self.engine.create_execution_context()
            self._allocate(trt)
        except BaseException:
            self.deactivate_impl()
            raise

    def _allocate(self, trt) -> None:
        engine = self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        profile_max = {n: tuple(engine.get_tensor_profile_shape(n, 0)[2]) for n in self.input_names}
        if self.max_batch is None:
            self.max_batch = profile_max[self.input_names[0]][0]
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.shapes = {n: tuple(engine.get_tensor_shape(n)) for n in names}
        for n in names:
            shape = profile_max[n] if n in profile_max else tuple(self.max_batch if d < 0 else d
                                                                   for d in self.shapes[n])
            self.host[n] = self.cuda.host_empty(shape, self.dtypes[n])
            self.device[n] = self.cuda.malloc(self.host[n].nbytes)
            self.context.set_tensor_address(n, self.device[n])
        self.stream = self.cuda.stream()
        self.events = [self.cuda.event() for _ in range(4)]

    def _check_feed(self, feed: dict[str, np.ndarray]) -> None:
        if set(feed) != set(self.input_names):
            raise EdgeresError(f"fed inputs {sorted(feed)}; the engine's inputs are {self.input_names}")
        for name, x in feed.items():
            want = tuple(self.shapes[name][1:])
            if tuple(x.shape[1:]) != want and all(d >= 0 for d in want):
                raise EdgeresError(f"input '{name}' has shape {tuple(x.shape)}; the engine takes (N, "
                                   f"{', '.join(map(str, want))})")

    def infer_impl(self, feed: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
        self._check_feed(feed)
        cuda, stream, ev = self.cuda, self.stream, self.events
        batch = next(iter(feed.values())).shape[0]
        for name, x in feed.items():
            self.context.set_input_shape(name, tuple(x.shape))
            np.copyto(self.host[name][:batch], x, casting="same_kind")
        cuda.record(ev[0], stream)
        for name, x in feed.items():
            cuda.h2d(self.device[name], self.host[name], x.shape[0] * self.host[name][0].nbytes, stream)
        cuda.record(ev[1], stream)
        self._execute(batch)
        cuda.record(ev[2], stream)
        shapes = {n: tuple(self.context.get_tensor_shape(n)) for n in self.output_names}
        for n in self.output_names:
            nbytes = int(np.prod(shapes[n])) * self.dtypes[n].itemsize
            cuda.d2h(self.host[n], self.device[n], nbytes, stream)
        cuda.record(ev[3], stream)
        cuda.synchronize(stream)
        self.last_device_times = {"h2d_ms": cuda.elapsed_ms(ev[0], ev[1]), "compute_ms": cuda.elapsed_ms(ev[1], ev[2]),
                                  "d2h_ms": cuda.elapsed_ms(ev[2], ev[3])}
        return OrderedDict((n, self.host[n].reshape(-1)[: int(np.prod(shapes[n]))].reshape(shapes[n]).copy())
                           for n in self.output_names)

    def _execute(self, batch: int) -> None:
        handle = self.cuda.handle(self.stream)
        if not self.cuda_graph:
            if not self.context.execute_async_v3(handle):
                raise EdgeresError("TensorRT could not enqueue the engine (execute_async_v3 returned False)")
            return
        if batch not in self.graphs:
            # One ordinary run first lets TensorRT finish shape-dependent setup outside the capture.
            if not self.context.execute_async_v3(handle):
                raise EdgeresError("TensorRT could not enqueue the engine (execute_async_v3 returned False)")
            self.cuda.synchronize(self.stream)
            self.graphs[batch] = self.cuda.capture(self.stream, lambda: self.context.execute_async_v3(handle))
        self.cuda.launch(self.graphs[batch], self.stream)

    def deactivate_impl(self) -> None:
        cuda = self.cuda
        if cuda is not None:
            if self.stream is not None:
                cuda.synchronize(self.stream)
            for graph in self.graphs.values():
                cuda.destroy_graph(graph)
            for event in self.events:
                cuda.destroy_event(event)
            for ptr in self.device.values():
                cuda.free(ptr)
            for array in self.host.values():
                cuda.free_host(array)
            if self.stream is not None:
                cuda.destroy_stream(self.stream)
        self.context = self.engine = self.runtime = None  # context before engine before runtime
        if cuda is not None:
            cuda.close()
        self._reset()

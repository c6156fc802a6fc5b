"""Runs a TensorRT engine: pinned host and device buffers, one stream, asynchronous execution, CUDA events.

Each ``infer`` records four events (before the host-to-device copy, before and after the engine, after
the device-to-host copy), so ``last_device_times`` holds the GPU compute time apart from the copies, as
trtexec reports it; ``last_inference_time`` (from the base class) is the end-to-end host time. With
``cuda_graph=True`` the engine's kernels are captured into a CUDA graph and replayed (lower batch-1 latency).

Every TensorRT call that reports failure with ``False`` is checked, as Polygraphy's runner does:
``set_tensor_address``, ``set_input_shape`` (a batch outside the engine's profile is an error, never a run with
the previous shape) and ``execute_async_v3``. A captured graph holds the execution context's state at capture
(input shapes, tensor addresses), so the runner keeps one graph, for the batch the context is set to, and captures
again when the batch changes; a failed capture is dropped, never replayed.
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
        raise EdgeresError(
            f"{engine_path} has no manifest ({manifest_file.name}); edgeres only loads engines it can "
            "check: rebuild it with 'edgeres build'"
        )
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

    def __init__(
        self,
        engine_path,
        max_batch: int | None = None,
        cuda_graph: bool = False,
        cuda_binding: str | None = None,
        manifest: dict | None = None,
    ):
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
        self.graphs: dict[int, object] = {}  # at most one: {batch the context is set to: graph}
        self.profiles: dict[str, tuple[int, int]] = {}  # input name -> (min, max) batch of profile 0

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
            shape = (
                profile_max[n] if n in profile_max else tuple(self.max_batch if d < 0 else d for d in self.shapes[n])
            )
            self.host[n] = self.cuda.host_empty(shape, self.dtypes[n])
            self.device[n] = self.cuda.malloc(self.host[n].nbytes)
            self._set_address(n, self.device[n])
        self.profiles = {
            n: (int(engine.get_tensor_profile_shape(n, 0)[0][0]), profile_max[n][0]) for n in self.input_names
        }
        self.stream = self.cuda.stream()
        self.events = [self.cuda.event() for _ in range(4)]

    def _set_address(self, name: str, ptr: int) -> None:
        if not self.context.set_tensor_address(name, ptr):
            raise EdgeresError(
                f"TensorRT refused the device address of tensor '{name}' (set_tensor_address returned "
                "False); see the TensorRT messages above"
            )

    def _set_shape(self, name: str, shape: tuple) -> None:
        """Set an input shape when it differs from the context's (set_input_shape's False is an error)."""
        if tuple(self.context.get_tensor_shape(name)) == shape:
            return
        low, high = self.profiles.get(name, (None, None))
        if not self.context.set_input_shape(name, shape):
            raise EdgeresError(
                f"TensorRT refused input '{name}' of shape {shape} (set_input_shape returned False); "
                f"the engine's batch profile is {low}..{high}"
            )

    def _check_feed(self, feed: dict[str, np.ndarray]) -> None:
        if set(feed) != set(self.input_names):
            raise EdgeresError(f"fed inputs {sorted(feed)}; the engine's inputs are {self.input_names}")
        for name, x in feed.items():
            want = tuple(self.shapes[name][1:])
            if tuple(x.shape[1:]) != want and all(d >= 0 for d in want):
                raise EdgeresError(
                    f"input '{name}' has shape {tuple(x.shape)}; the engine takes (N, {', '.join(map(str, want))})"
                )
            low, high = self.profiles.get(name, (1, self.max_batch))
            if not low <= x.shape[0] <= high:
                fixed = "a DLA engine runs one fixed batch; " if low == high else ""
                raise EdgeresError(
                    f"batch {x.shape[0]} is outside this engine's batch profile {low}..{high} "
                    f"({fixed}rebuild with --min-batch/--max-batch covering {x.shape[0]})"
                )

    def infer_impl(self, feed: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
        self._check_feed(feed)
        cuda, stream, ev = self.cuda, self.stream, self.events
        batch = next(iter(feed.values())).shape[0]
        for name, x in feed.items():
            self._set_shape(name, tuple(x.shape))
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
        self.last_device_times = {
            "h2d_ms": cuda.elapsed_ms(ev[0], ev[1]),
            "compute_ms": cuda.elapsed_ms(ev[1], ev[2]),
            "d2h_ms": cuda.elapsed_ms(ev[2], ev[3]),
        }
        return OrderedDict(
            (n, self.host[n].reshape(-1)[: int(np.prod(shapes[n]))].reshape(shapes[n]).copy())
            for n in self.output_names
        )

    def _enqueue(self, handle: int) -> None:
        if not self.context.execute_async_v3(handle):
            raise EdgeresError(
                "TensorRT could not enqueue the engine (execute_async_v3 returned False); see the "
                "TensorRT messages above"
            )

    def _execute(self, batch: int) -> None:
        handle = self.cuda.handle(self.stream)
        if not self.cuda_graph:
            self._enqueue(handle)
            return
        if batch not in self.graphs:
            # The context's shape changed since the last capture: that graph holds the old shape; drop it.
            self._drop_graphs()
            # One ordinary run first lets TensorRT finish shape-dependent setup outside the capture.
            self._enqueue(handle)
            self.cuda.synchronize(self.stream)
            try:
                graph = self.cuda.capture(self.stream, lambda: self.context.execute_async_v3(handle))
            except EdgeresError as exc:
                raise EdgeresError(
                    f"CUDA-graph capture of the engine failed for batch {batch}: {exc}; run without --cuda-graph"
                ) from None
            self.graphs[batch] = graph
        self.cuda.launch(self.graphs[batch], self.stream)

    def _drop_graphs(self) -> None:
        for graph in self.graphs.values():
            self.cuda.destroy_graph(graph)
        self.graphs.clear()

    def deactivate_impl(self) -> None:
        cuda = self.cuda
        if cuda is not None:
            if self.stream is not None:
                cuda.synchronize(self.stream)
            self._drop_graphs()
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

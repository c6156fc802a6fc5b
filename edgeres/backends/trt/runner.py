"""Slot for the TensorRT runner: until the TensorRT backend lands, a clear "not available" error."""

from __future__ import annotations

from edgeres.backends.base import BaseRunner
from edgeres.errors import EdgeresError, require


def check_tensorrt_available() -> None:
    """Raise a clear error when TensorRT cannot be imported (the `tensorrt` extra, or JetPack's)."""
    require("tensorrt", "tensorrt")


class TensorRTRunner(BaseRunner):
    name = "tensorrt"

    def __init__(self, engine_path, max_batch: int | None = None):
        super().__init__(max_batch=max_batch)
        self.engine_path = engine_path

    def activate_impl(self) -> None:
        check_tensorrt_available()
        raise EdgeresError(
            "this edgeres version cannot run TensorRT engines yet; build an ONNX Runtime engine "
            "(--backend onnxruntime) instead"
        )

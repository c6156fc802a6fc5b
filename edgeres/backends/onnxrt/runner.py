"""Runs an ONNX Runtime session."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from edgeres.backends.base import BaseRunner
from edgeres.backends.onnxrt.loader import SessionLoader


class OnnxRuntimeRunner(BaseRunner):
    """Runner over a session built by a ``SessionLoader`` when activated."""

    name = "onnxruntime"

    def __init__(self, loader: SessionLoader, max_batch: int | None = None):
        super().__init__(max_batch=max_batch)
        self.loader = loader
        self.session = None

    def activate_impl(self) -> None:
        self.session = self.loader()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer_impl(self, feed: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, feed)
        return OrderedDict(zip(self.output_names, outputs, strict=True))

    def deactivate_impl(self) -> None:
        self.session = None

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers() if self.session is not None else []

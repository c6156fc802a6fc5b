"""Runs an OpenVINO compiled model on the CPU."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from edgeres.backends.base import BaseRunner
from edgeres.backends.openvino.loader import ModelLoader

# Compiled shapes kept per runner (batch sizes met); the oldest is dropped beyond this.
MAX_COMPILED = 4


class OpenVinoRunner(BaseRunner):
    """Runner over models compiled by a ``ModelLoader``: one compiled model and infer request per input shape,
    made the first time that shape is fed."""

    name = "openvino"

    def __init__(self, loader: ModelLoader, max_batch: int | None = None):
        super().__init__(max_batch=max_batch)
        self.loader = loader
        self.requests: OrderedDict[tuple, object] = OrderedDict()

    def activate_impl(self) -> None:
        shape = (1, *self.loader.sample_shape())
        compiled = self.loader.compile(shape)
        self.input_names = [compiled.inputs[0].get_any_name()]
        self.output_names = [o.get_any_name() for o in compiled.outputs]
        self.requests[shape] = compiled.create_infer_request()

    def request_for(self, shape: tuple[int, ...]):
        request = self.requests.get(shape)
        if request is None:
            request = self.loader.compile(shape).create_infer_request()
            self.requests[shape] = request
            while len(self.requests) > MAX_COMPILED:
                self.requests.popitem(last=False)
        return request

    def infer_impl(self, feed: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
        x = np.ascontiguousarray(feed[self.input_names[0]], dtype=np.float32)
        request = self.request_for(tuple(x.shape))
        request.infer({0: x}, share_inputs=True)  # no copy of the batch; x outlives the call
        return OrderedDict((name, request.get_output_tensor(i).data.copy())
                           for i, name in enumerate(self.output_names))

    def deactivate_impl(self) -> None:
        self.requests.clear()

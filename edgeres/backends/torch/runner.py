"""Runs a torch module as the reference backend (numpy in, numpy out)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from edgeres.backends.base import BaseRunner


class TorchRunner(BaseRunner):
    name = "torch"

    def __init__(self, loader: Callable, device: str = "cpu", output_names: tuple[str, ...] = ("logits",)):
        super().__init__()
        self.loader = loader
        self.device = device
        self._output_names = list(output_names)
        self.model = None

    def activate_impl(self) -> None:
        self.model = self.loader().to(self.device).eval()
        self.input_names = ["input"]
        self.output_names = self._output_names

    def infer_impl(self, feed: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
        import torch

        x = torch.from_numpy(next(iter(feed.values()))).to(self.device)
        with torch.inference_mode():
            out = self.model(x)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return OrderedDict((n, o.float().cpu().numpy()) for n, o in zip(self.output_names, outs, strict=True))

    def deactivate_impl(self) -> None:
        self.model = None

"""The runner interface every backend implements (after Polygraphy's ``backend/base/runner.py``).

Public methods do the checks and timing once; backends override the ``*_impl`` methods.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np

from edgeres.errors import EdgeresError


class BaseRunner:
    """activate / infer / deactivate, usable as a context manager.

    Subclasses implement ``activate_impl``, ``infer_impl`` and ``deactivate_impl`` and set
    ``input_names``/``output_names`` in ``activate_impl``.
    """

    name = "base"

    def __init__(self, max_batch: int | None = None):
        self.is_active = False
        self.max_batch = max_batch
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        self.last_inference_time: float | None = None

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> None:
        if not self.is_active:
            self.activate_impl()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def infer(self, feed: dict[str, np.ndarray] | np.ndarray) -> OrderedDict[str, np.ndarray]:
        """Run one batch; an array is fed to the only input. Records ``last_inference_time`` (s).

        Raises:
            EdgeresError: the runner is not active, or the batch exceeds what the engine was built for.
        """
        if not self.is_active:
            raise EdgeresError(f"{self.name} runner is not active; use it as a context manager or call activate()")
        if isinstance(feed, np.ndarray):
            feed = {self.input_names[0]: feed}
        batch = next(iter(feed.values())).shape[0]
        if self.max_batch is not None and batch > self.max_batch:
            raise EdgeresError(f"batch {batch} is above the engine's maximum batch {self.max_batch}; "
                               "rebuild with a larger --max-batch")
        start = time.perf_counter()
        out = self.infer_impl(feed)
        self.last_inference_time = time.perf_counter() - start
        return out

    def activate_impl(self) -> None:
        raise NotImplementedError

    def infer_impl(self, feed: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        pass

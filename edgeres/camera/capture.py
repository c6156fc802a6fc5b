"""The capture stage: one thread per stream reads frames into the stream's slot.

Live sources (and files with ``realtime``) put frames in a slot where the newest frame wins: an unread
frame is replaced and counted as dropped, so latency never grows. Files and image folders otherwise
block until the slot is free: every frame is processed. A live stream or camera that stops delivering is
reopened with exponential backoff; it never holds up the other streams, which have their own threads.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgeres.camera.slots import FrameSlot, Stopper
from edgeres.camera.sources import SourceOpenError
from edgeres.errors import DataError

EventFn = Callable[[str, str], None]  # (level: "warning" | "note", message)


@dataclass
class Frame:
    """One captured frame on its way through the loop; ``stream`` is its stream's position in the run."""

    index: int
    image: np.ndarray
    source_ts: float
    captured: float
    stream: int = 0
    times: dict = field(default_factory=dict)
    outputs: np.ndarray | None = None
    batch: int = 1


class CaptureWorker(threading.Thread):
    """Reads frames into a slot; reconnects live sources with backoff; paces files in real time."""

    def __init__(
        self,
        reader,
        spec,
        slot: FrameSlot,
        stopper: Stopper,
        pace: bool,
        on_event: EventFn,
        stream: int = 0,
        label: str = "",
        opened: bool = True,
    ):
        super().__init__(name=f"edgeres-capture-{stream}", daemon=True)
        self.reader, self.spec, self.slot, self.stopper = reader, spec, slot, stopper
        self.pace = pace
        self.on_event = on_event
        self.stream = stream
        self.label = label  # "stream 'cam1': " in multi-stream runs, so warnings say which
        self.read = 0
        self.decode_errors = 0
        self.reconnects = 0
        self.opened = opened  # False: the first open failed; the thread starts by reconnecting
        self.connected = opened  # False while reconnecting: the batcher does not wait for this stream then
        self.ended = False  # the source ended (EOF) rather than the loop stopping it
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the loop after shutdown
            self.error = exc
        finally:
            self.connected = False
            self.slot.close()
            with contextlib.suppress(Exception):
                self.reader.close()

    def _warn(self, message: str) -> None:
        self.on_event("warning", self.label + message)

    def _run(self) -> None:
        index = 0
        t_first = ts_first = None
        if not self.opened and not self._reconnect():
            return
        while not self.stopper.is_set():
            r = self.reader.read()
            if r.status == "end":
                if not self.spec.reconnects:
                    self.ended = True
                    if self.spec.kind == "file":
                        self._check_complete(index)
                    return
                if not self._reconnect():
                    return
                continue
            if r.status == "bad":
                self.decode_errors += 1
                if self.decode_errors <= 3 or self.decode_errors % 100 == 0:
                    self._warn(
                        f"frame {index} of {self.spec.describe()} failed to decode; skipped "
                        f"({self.decode_errors} so far)"
                    )
                index += 1
                continue
            if self.pace:  # --realtime: each frame is due at its source timestamp
                if t_first is None:
                    t_first, ts_first = time.perf_counter(), r.source_ts
                delay = t_first + (r.source_ts - ts_first) - time.perf_counter()
                if delay > 0 and self.stopper.wait(delay):
                    return
                r.captured = time.perf_counter()  # a paced frame is "captured" when it is due
            self.read += 1
            frame = Frame(index, r.image, r.source_ts, r.captured, self.stream)
            index += 1
            if not self.slot.put(frame):
                return

    def _check_complete(self, frames: int) -> None:
        """At the end of a file (``frames``: read or failed to decode): fewer frames than its header declares
        means it was cut short (a copy that did not finish, a recording whose writer was killed). Some frames
        read: a warning; none: an error (raised by the loop once it has stopped)."""
        expected = getattr(self.reader, "expected_frames", None)
        if self.read == 0:
            declared = f" of the {expected} its header declares" if expected else ""
            self.error = DataError(
                f"{self.spec.describe()}: no frame could be read{declared}: the file is truncated or damaged"
            )
        elif expected and frames < expected - max(2, expected // 100):  # container durations round a little
            self._warn(
                f"{self.spec.describe()} ended after {frames} of the {expected} frames its header declares: "
                "file truncated?"
            )

    def _reconnect(self) -> bool:
        """Reopen a lost live source with exponential backoff until it works or the loop stops."""
        self.connected = False
        lost = time.perf_counter()
        delay, attempt = 0.5, 0
        with contextlib.suppress(Exception):
            self.reader.close()
        if self.opened:
            self._warn(
                f"lost {self.spec.describe()} after {self.read} frames read; reconnecting "
                "(backoff 0.5 s, doubling up to 8 s)"
            )
        self.opened = True
        while not self.stopper.wait(delay):
            attempt += 1
            try:
                self.reader.open()
            except SourceOpenError as exc:
                if attempt in (1, 3) or attempt % 10 == 0:
                    self._warn(f"reconnect attempt {attempt} failed: {exc}")
                delay = min(delay * 2, 8.0)
                continue
            self.reconnects += 1
            self.connected = True
            self._warn(
                f"reconnected to {self.spec.describe()} after {time.perf_counter() - lost:.1f} s "
                f"({attempt} attempt{'s' * (attempt > 1)})"
            )
            return True
        return False

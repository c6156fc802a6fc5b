"""The inference stage: one thread takes the newest unprocessed frame of every stream, runs them through the
engine as one batch and hands the batch on.

Batching (what DeepStream's stream muxer does, in a few lines): when at least one frame is waiting, the
thread waits up to ``max_batch_wait`` for the other streams that are delivering to have one too, then runs
what it has (up to the engine's largest batch). A stream that is reconnecting, or has sent nothing for a
second, is not waited for, so a dead or slow camera never holds up the others. With more streams than
the engine's batch, streams take turns (the first stream of each batch rotates), so every stream is served.
A fixed-batch engine gets its batch padded with copies of the last frame (their outputs are discarded).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from edgeres.camera.capture import CaptureWorker, EventFn
from edgeres.camera.slots import FrameSlot, SlotClosed, Stopper
from edgeres.errors import EdgeresError
from edgeres.processing import preprocess

# A stream that delivered nothing for this long is not waited for when a batch is filled.
QUIET_AFTER_S = 1.0


class StallError(EdgeresError):
    """Every source stopped delivering frames for longer than the stall timeout."""


@dataclass
class Batching:
    """How batches are formed: the largest batch the engine takes, whether it must be exactly that (a
    fixed-batch engine), and how long to wait for more streams' frames once one is waiting."""

    max_batch: int = 1
    fixed: bool = False
    max_wait: float = 0.01


class Lane:
    """One stream as the inference thread sees it: its slot, its capture thread and when it last delivered."""

    def __init__(self, slot: FrameSlot, capture: CaptureWorker, describe: str, now: float):
        self.slot, self.capture, self.describe = slot, capture, describe
        self.last = now  # the last frame taken (or the start)
        self.done = False  # closed and empty: the source ended or its thread stopped
        self.stalled = False
        self.processed = 0


class InferenceWorker(threading.Thread):
    """Takes the newest frame of each stream, pre-processes them and runs the engine on them as one batch."""

    def __init__(
        self,
        runner,
        cfg,
        lanes: list[Lane],
        ready: threading.Event,
        out_slot: FrameSlot,
        stopper: Stopper,
        stall_timeout: float,
        batching: Batching,
        on_event: EventFn,
    ):
        super().__init__(name="edgeres-inference", daemon=True)
        self.runner, self.cfg, self.lanes, self.ready = runner, cfg, lanes, ready
        self.out_slot, self.stopper = out_slot, stopper
        self.stall_timeout, self.batching, self.on_event = stall_timeout, batching, on_event
        self.batches = 0
        self.batched_frames = 0
        self.error: BaseException | None = None
        self._turn = 0

    def run(self) -> None:
        try:
            self._run()
        except SlotClosed:
            pass
        except BaseException as exc:
            self.error = exc
            self.stopper.request("error")
        finally:
            self.out_slot.close()

    def _run(self) -> None:
        while not self.stopper.is_set():
            start = time.perf_counter()
            frames = self._gather()
            if not frames:
                return
            t1 = time.perf_counter()
            images = [f.image for f in frames]
            if self.batching.fixed and len(images) < self.batching.max_batch:
                images += [images[-1]] * (self.batching.max_batch - len(images))
            x = preprocess(images, self.cfg)
            t2 = time.perf_counter()
            outputs = next(iter(self.runner.infer(x).values()))
            t3 = time.perf_counter()
            for i, frame in enumerate(frames):
                frame.outputs = outputs[i : i + 1]
                frame.batch = len(frames)
                frame.times.update(capture_wait=t1 - start, preprocess=t2 - t1, inference=t3 - t2)
            self.batches += 1
            self.batched_frames += len(frames)
            if not self.out_slot.put(frames):
                return

    def _expected(self, lane: Lane, now: float) -> bool:
        """Whether a batch should wait for this stream: it is connected and has been delivering."""
        return not lane.done and not lane.stalled and lane.capture.connected and now - lane.last < QUIET_AFTER_S

    def _gather(self) -> list:
        """The next batch: the newest frame of each stream that has one, after waiting up to ``max_wait`` for
        the other delivering streams; empty when every stream has ended or the loop stops.

        Raises:
            StallError: every stream that has not ended stayed silent longer than the stall timeout.
        """
        lanes = self.lanes[self._turn :] + self.lanes[: self._turn]
        self._turn = (self._turn + 1) % len(self.lanes)
        taken: list = []
        taken_from: set[int] = set()
        first_at: float | None = None
        while not self.stopper.is_set():
            self.ready.clear()  # cleared before looking, so a put after the look wakes the wait below
            now = time.perf_counter()
            for n, lane in enumerate(lanes):
                if lane.done or n in taken_from or len(taken) >= self.batching.max_batch:
                    continue
                try:
                    frame = lane.slot.take()
                except SlotClosed:
                    lane.done = True
                    continue
                if frame is not None:
                    taken.append(frame)
                    taken_from.add(n)
                    self._delivered(lane, now)
            if all(lane.done for lane in lanes):
                return taken
            if taken:
                first_at = first_at or now
                waiting_for = [n for n, lane in enumerate(lanes) if n not in taken_from and self._expected(lane, now)]
                full = len(taken) >= self.batching.max_batch
                if full or not waiting_for or now - first_at >= self.batching.max_wait:
                    return taken
                timeout = self.batching.max_wait - (now - first_at)
            else:
                self._check_stalls(lanes, now)
                timeout = 0.1
            self.ready.wait(max(timeout, 0.0005))
        return []

    def _delivered(self, lane: Lane, now: float) -> None:
        if lane.stalled:
            lane.stalled = False
            self.on_event("warning", f"{lane.describe} is sending frames again")
        lane.last = now
        lane.processed += 1

    def _check_stalls(self, lanes: list[Lane], now: float) -> None:
        if not self.stall_timeout:
            return
        for lane in lanes:
            if not lane.done and not lane.stalled and now - lane.last > self.stall_timeout:
                lane.stalled = True
                if len(self.lanes) > 1:
                    self.on_event(
                        "warning",
                        f"no frame from {lane.describe} for {self.stall_timeout:g} s; the other "
                        "streams go on" + (" and it keeps reconnecting" if lane.capture.spec.reconnects else ""),
                    )
        live = [lane for lane in lanes if not lane.done]
        if live and all(lane.stalled for lane in live):
            worst = min(live, key=lambda lane: lane.last)
            raise StallError(self._stall_message(worst, multi=len(self.lanes) > 1))

    def _stall_message(self, lane: Lane, multi: bool) -> str:
        if multi:
            return f"no frame from any stream for {self.stall_timeout:g} s (the last was {lane.describe}); giving up"
        if lane.processed == 0 and lane.capture.read == 0:
            return (
                f"{lane.describe} opened but yielded no frame in {self.stall_timeout:g} s; is it sending? "
                "(raise --stall-timeout for slow sources)"
            )
        trying = " (reconnecting did not bring it back)" if lane.capture.spec.reconnects else ""
        return (
            f"no frame from {lane.describe} for {self.stall_timeout:g} s after {lane.processed} processed "
            f"frames{trying}; giving up"
        )


def batching_for(engine, streams: int, max_wait: float, cap: int | None = None) -> Batching:
    """The batching of a run: up to the engine's largest batch (a fixed batch is used as is), never more than
    the number of streams.

    Raises:
        EdgeresError: ``cap`` is below 1.
    """
    shape = engine.manifest.get("input", {}).get("shape") or [-1]
    fixed = isinstance(shape[0], int) and shape[0] > 0
    limit = shape[0] if fixed else (engine.manifest.get("input", {}).get("max_batch") or streams)
    if cap is not None:
        if cap < 1:
            raise EdgeresError(f"--max-batch must be at least 1, got {cap}")
        if fixed and cap != limit:
            raise EdgeresError(
                f"{engine.engine_file} takes batches of exactly {limit}; --max-batch {cap} does not "
                "apply (rebuild it with a dynamic batch)"
            )
        limit = min(limit, cap)
    return Batching(max_batch=int(limit) if fixed else int(max(1, min(limit, streams))), fixed=fixed, max_wait=max_wait)


def zero_batch(cfg, n: int) -> np.ndarray:
    """A batch of ``n`` black frames at network size, pre-processed (for warm-up)."""
    return preprocess([np.zeros((*cfg.input_size, 3), np.uint8)] * n, cfg)

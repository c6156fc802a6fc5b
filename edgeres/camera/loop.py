"""The pipelined camera loop: capture | pre-process + inference | post-process + render + sinks.

Three threads, joined by one-slot hand-offs:

- capture (its own thread) reads frames. Live sources (and files with ``realtime``) put them in a slot
  where the newest frame wins: an unread frame is replaced and counted as dropped, so latency never
  grows. Files and image folders otherwise block until the slot is free: every frame is processed.
  A live stream or camera that stops delivering is reopened with exponential backoff.
- inference takes the newest frame, pre-processes it (the shared ``edgeres.processing`` code) and runs
  the engine; it also watches for a source that stays silent longer than ``stall_timeout``.
- the calling thread post-processes (softmax + top-k), draws overlays and feeds the sinks, so a
  window lives on the main thread and signal handlers run promptly.

Stopping (max frames, duration, end of a file, Ctrl-C/SIGTERM through ``stop_on_signals``, a window's q)
sets one event; every wait is bounded, the threads are joined with deadlines, and the sinks are always
closed, so a recording is finalized however the loop ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeres.camera.overlays import Hud, OverlayConfig, render
from edgeres.camera.sources import SourceConfig, SourceOpenError, make_reader, opencv_log_level, parse_source
from edgeres.errors import EdgeresError
from edgeres.processing import preprocess, softmax, topk

STAGES = ("capture_wait", "preprocess", "inference", "postprocess", "render")
TASKS = ("classify", "detect")
EventFn = Callable[[str, str], None]  # (level: "warning" | "note", message)


class StallError(EdgeresError):
    """The source stopped delivering frames for longer than the stall timeout."""


@dataclass
class LoopConfig:
    """When to stop and what to compute; see ``run_loop``."""

    max_frames: int | None = None
    duration: float | None = None
    realtime: bool = False
    top_k: int = 5
    score_threshold: float | None = None  # detect: None = the engine manifest's default
    nms_iou: float | None = None
    stall_timeout: float = 20.0  # 0: wait for frames forever
    overlays: OverlayConfig = field(default_factory=OverlayConfig)


@dataclass
class Frame:
    index: int
    image: np.ndarray
    source_ts: float
    captured: float
    times: dict = field(default_factory=dict)
    outputs: np.ndarray | None = None


class Stopper:
    """The one stop flag every thread watches, with the reason it was raised first."""

    def __init__(self):
        self.event = threading.Event()
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)


class SlotClosed(Exception):
    """The slot was closed and is empty: no more items will come."""


class FrameSlot:
    """A one-item hand-off between two threads.

    ``newest_wins``: ``put`` replaces an unread item (counted in ``dropped``) and never blocks.
    Otherwise ``put`` waits until the item was taken (back-pressure: nothing is lost).
    """

    def __init__(self, newest_wins: bool):
        self.newest_wins = newest_wins
        self.dropped = 0
        self._item = None
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item) -> bool:
        """Hand over an item; False when the slot was closed (the consumer is gone)."""
        with self._cond:
            if not self.newest_wins:
                while self._item is not None and not self._closed:
                    self._cond.wait(0.1)
            if self._closed:
                return False
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify_all()
            return True

    def get(self, timeout: float):
        """The waiting item, or None after ``timeout`` seconds.

        Raises:
            SlotClosed: the slot is closed and empty.
        """
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            if item is None and self._closed:
                raise SlotClosed
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """No more puts; a waiting ``get`` returns what is left, then raises ``SlotClosed``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class CaptureWorker(threading.Thread):
    """Reads frames into a slot; reconnects live sources with backoff; paces files in real time."""

    def __init__(self, reader, spec, slot: FrameSlot, stopper: Stopper, pace: bool, on_event: EventFn):
        super().__init__(name="edgeres-capture", daemon=True)
        self.reader, self.spec, self.slot, self.stopper = reader, spec, slot, stopper
        self.pace = pace
        self.on_event = on_event
        self.read = 0
        self.decode_errors = 0
        self.reconnects = 0
        self.ended = False  # the source ended (EOF) rather than the loop stopping it
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the loop after shutdown
            self.error = exc
        finally:
            self.slot.close()
            with contextlib.suppress(Exception):
                self.reader.close()

    def _run(self) -> None:
        index = 0
        t_first = ts_first = None
        while not self.stopper.is_set():
            r = self.reader.read()
            if r.status == "end":
                if not self.spec.reconnects:
                    self.ended = True
                    return
                if not self._reconnect():
                    return
                continue
            if r.status == "bad":
                self.decode_errors += 1
                if self.decode_errors <= 3 or self.decode_errors % 100 == 0:
                    self.on_event("warning", f"frame {index} of {self.spec.describe()} failed to decode; skipped "
                                             f"({self.decode_errors} so far)")
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
            frame = Frame(index, r.image, r.source_ts, r.captured)
            index += 1
            if not self.slot.put(frame):
                return

    def _reconnect(self) -> bool:
        """Reopen a lost live source with exponential backoff until it works or the loop stops."""
        lost = time.perf_counter()
        delay, attempt = 0.5, 0
        with contextlib.suppress(Exception):
            self.reader.close()
        self.on_event("warning", f"lost {self.spec.describe()} after {self.read} frames read; reconnecting "
                                 "(backoff 0.5 s, doubling up to 8 s)")
        while not self.stopper.wait(delay):
            attempt += 1
            try:
                self.reader.open()
            except SourceOpenError as exc:
                if attempt in (1, 3) or attempt % 10 == 0:
                    self.on_event("warning", f"reconnect attempt {attempt} failed: {exc}")
                delay = min(delay * 2, 8.0)
                continue
            self.reconnects += 1
            self.on_event("warning", f"reconnected to {self.spec.describe()} after "
                                     f"{time.perf_counter() - lost:.1f} s ({attempt} attempt{'s' * (attempt > 1)})")
            return True
        return False


class InferenceWorker(threading.Thread):
    """Takes frames, pre-processes them and runs the engine; raises a stall when the source goes quiet."""

    def __init__(self, runner, cfg, in_slot: FrameSlot, out_slot: FrameSlot, stopper: Stopper,
                 stall_timeout: float, describe: str, capture: CaptureWorker):
        super().__init__(name="edgeres-inference", daemon=True)
        self.runner, self.cfg = runner, cfg
        self.in_slot, self.out_slot, self.stopper = in_slot, out_slot, stopper
        self.stall_timeout, self.describe, self.capture = stall_timeout, describe, capture
        self.error: BaseException | None = None

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
        frames = 0
        while not self.stopper.is_set():
            start = time.perf_counter()
            frame = None
            while frame is None and not self.stopper.is_set():
                frame = self.in_slot.get(0.1)
                waited = time.perf_counter() - start
                if frame is None and self.stall_timeout and waited > self.stall_timeout:
                    raise StallError(self._stall_message(frames))
            if frame is None:
                return
            t1 = time.perf_counter()
            x = preprocess([frame.image], self.cfg)
            t2 = time.perf_counter()
            frame.outputs = next(iter(self.runner.infer(x).values()))
            t3 = time.perf_counter()
            frame.times.update(capture_wait=t1 - start, preprocess=t2 - t1, inference=t3 - t2)
            frames += 1
            if not self.out_slot.put(frame):
                return

    def _stall_message(self, frames: int) -> str:
        if frames == 0 and self.capture.read == 0:
            return (f"{self.describe} opened but yielded no frame in {self.stall_timeout:g} s; is it sending? "
                    "(raise --stall-timeout for slow sources)")
        trying = " (reconnecting did not bring it back)" if self.capture.spec.reconnects else ""
        return (f"no frame from {self.describe} for {self.stall_timeout:g} s after {frames} processed "
                f"frames{trying}; giving up")


def make_postprocess(engine, cfg: LoopConfig) -> Callable[[np.ndarray, tuple[int, int]], list[dict]]:
    """The post-processing for an engine's task: (outputs of one frame, the frame's (h, w)) -> its predictions.

    Classify: the top-k labels. Detect: boxes in frame pixels from the same numpy decoder and NMS as ``predict``
    and ``eval``, with the manifest's score threshold and NMS IoU unless the config overrides them.

    Raises:
        EdgeresError: an unknown task, or bad detection settings.
    """
    class_names = engine.class_names
    if engine.task == "classify":
        def classify(logits: np.ndarray, image_hw: tuple[int, int]) -> list[dict]:
            idx, val = topk(softmax(logits), cfg.top_k)
            return [{"label": class_names[i], "index": int(i), "score": float(s)}
                    for i, s in zip(idx[0], val[0], strict=True)]
        return classify
    if engine.task == "detect":
        from edgeres.evaluate_detect import decode_maps
        from edgeres.predict import detection_settings, detections_to_json

        settings = detection_settings(engine.manifest, cfg.score_threshold, cfg.nms_iou)
        input_hw = engine.preprocess.input_size

        def detect(maps: np.ndarray, image_hw: tuple[int, int]) -> list[dict]:
            return detections_to_json(decode_maps(maps, len(class_names), input_hw, [image_hw], settings)[0],
                                      class_names)
        return detect
    raise EdgeresError(f"unknown engine task '{engine.task}'; accepted: {', '.join(TASKS)}")


class ResultStage:
    """Post-process, draw and feed the sinks, one frame at a time, on the calling thread; keeps the stats."""

    def __init__(self, post: Callable[[np.ndarray], list[dict]], task: str, sinks: list, cfg: LoopConfig):
        self.post, self.task, self.sinks, self.cfg = post, task, sinks, cfg
        self.image_sinks = [s for s in sinks if s.needs_image]
        self.draw = bool(self.image_sinks) and cfg.overlays.any
        self.hud = Hud()
        self.lat: dict[str, list[float]] = {s: [] for s in (*STAGES, "capture_to_result")}
        self.processed = 0
        self.first_done: float | None = None
        self.last_done: float | None = None

    def handle(self, frame: Frame) -> None:
        t0 = time.perf_counter()
        record = {"frame": frame.index, "source_ts": round(frame.source_ts, 6), "task": self.task,
                  "predictions": self.post(frame.outputs, frame.image.shape[:2])}
        t1 = time.perf_counter()
        image = frame.image
        if self.draw:
            image = render(image, record, self.hud, self.cfg.overlays, min(self.cfg.top_k, 5))
        for sink in self.image_sinks:
            sink.write(record, image)
        t2 = time.perf_counter()
        frame.times.update(postprocess=t1 - t0, render=t2 - t1, capture_to_result=t2 - frame.captured)
        record["times_ms"] = {k: round(v * 1e3, 3) for k, v in frame.times.items()}
        for sink in self.sinks:
            if not sink.needs_image:
                sink.write(record, None)
        for k, v in frame.times.items():
            self.lat[k].append(v)
        self.hud.update(record["times_ms"], t2)
        self.processed += 1
        self.first_done = self.first_done or t2
        self.last_done = t2

    @property
    def outputs_closed(self) -> bool:
        return any(getattr(s, "closed", False) for s in self.sinks)

    @property
    def fps(self) -> float | None:
        """Processed frames per second, first result to last (start-up and warm-up left out)."""
        if self.processed < 2 or self.last_done <= self.first_done:
            return None
        return (self.processed - 1) / (self.last_done - self.first_done)

    def close_sinks(self) -> None:
        """Close every sink (a recording is finalized here), even when one of them fails."""
        failure = None
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


def run_loop(engine, reader, spec, sinks: list, cfg: LoopConfig, stopper: Stopper | None = None,
             on_event: EventFn | None = None) -> dict:
    """Run the loop over an opened source until a stop condition; close the sinks however it ends.

    Args:
        engine: an ``edgeres.engine.Engine`` (not yet activated).
        reader: the source's reader, already opened (``make_reader(...).open()``).
        spec: the parsed source.
        sinks: objects with ``write(record, image)`` / ``close()`` / ``needs_image``; each record is a
            dict: frame, source_ts, task, predictions, times_ms.
        cfg: stop conditions, top-k, overlays, realtime pacing.
        stopper: set it from elsewhere (signals, another thread) to stop.
        on_event: called with (level, message) for warnings (reconnects, decode errors).

    Returns:
        The summary: frames read/processed/dropped, decode errors, reconnects, FPS, latency stats (ms) per
        stage and capture-to-result, and why the loop stopped.

    Raises:
        StallError: the source stayed silent longer than ``cfg.stall_timeout``.
        EdgeresError: an unknown-task engine.
    """
    from edgeres.bench import latency_stats

    on_event = on_event or (lambda level, message: None)
    stopper = stopper or Stopper()
    results = ResultStage(make_postprocess(engine, cfg), engine.task, sinks, cfg)
    pcfg = engine.preprocess
    in_slot, out_slot = FrameSlot(newest_wins=spec.live or cfg.realtime), FrameSlot(newest_wins=False)

    with engine, opencv_log_level("ERROR"):
        engine.runner.infer(preprocess([np.zeros((*pcfg.input_size, 3), np.uint8)], pcfg))  # warm-up, untimed
        capture = CaptureWorker(reader, spec, in_slot, stopper, cfg.realtime and not spec.live, on_event)
        infer = InferenceWorker(engine.runner, pcfg, in_slot, out_slot, stopper, cfg.stall_timeout,
                                spec.describe(), capture)
        start = time.perf_counter()
        capture.start()
        infer.start()
        try:
            while True:
                if cfg.duration is not None and time.perf_counter() - start >= cfg.duration:
                    stopper.request("duration")
                if stopper.is_set():
                    break
                try:
                    frame = out_slot.get(0.1)
                except SlotClosed:
                    stopper.request("end of source" if capture.ended else "source stopped")
                    break
                if frame is None:
                    continue
                results.handle(frame)
                if results.outputs_closed:
                    stopper.request("output closed")
                if cfg.max_frames is not None and results.processed >= cfg.max_frames:
                    stopper.request("max frames")
        finally:
            stopper.request("stopped")
            in_slot.close()
            out_slot.close()
            try:
                results.close_sinks()  # first: only this thread writes them, and a recording must be finalized
            finally:
                infer.join(10.0)
                capture.join(reader.cfg.read_timeout + 2.0)
                if capture.is_alive():
                    on_event("warning", f"the capture thread is still blocked reading {spec.describe()}; left to "
                                        "exit with the process")
    elapsed = time.perf_counter() - start
    for worker in (infer, capture):
        if worker.error is not None:
            raise worker.error
    return {
        "source": spec.describe(), "opened_with": getattr(reader, "opened_with", None), "task": engine.task,
        "engine": str(engine.engine_file), "frames_read": capture.read, "frames_processed": results.processed,
        "frames_dropped": in_slot.dropped, "decode_errors": capture.decode_errors, "reconnects": capture.reconnects,
        "seconds": round(elapsed, 3), "fps": results.fps, "stopped_by": stopper.reason,
        "latency_ms": {k: latency_stats(v) for k, v in results.lat.items() if v},
    }


@dataclass
class CameraConfig:
    """Everything ``edgeres camera`` needs; the CLI only fills this in."""

    engine: Path
    source: SourceConfig
    loop: LoopConfig = field(default_factory=LoopConfig)
    threads: int | None = None
    spinning: bool = False  # idle ONNX Runtime threads would take the cores capture and rendering need


def check_options(spec, cfg: CameraConfig) -> None:
    """Reject option combinations that do not apply to this source (never silently ignore them).

    Raises:
        EdgeresError: ``--realtime`` or ``--fps`` with a live source, or non-positive limits.
    """
    if spec.live and cfg.loop.realtime:
        raise EdgeresError(f"--realtime paces files and image folders; {spec.describe()} is live and already "
                           "drops old frames")
    if spec.live and cfg.source.fps is not None:
        raise EdgeresError(f"--fps sets the rate of image folders; {spec.describe()} has its own")
    if spec.kind == "file" and cfg.source.fps is not None:
        raise EdgeresError("--fps sets the rate of image folders; a video file plays at its own")
    for name, value in (("--max-frames", cfg.loop.max_frames), ("--duration", cfg.loop.duration)):
        if value is not None and value <= 0:
            raise EdgeresError(f"{name} must be positive, got {value}")


def run_camera(cfg: CameraConfig, sinks_factory: Callable[[float], list], stopper: Stopper | None = None,
               on_event: EventFn | None = None) -> dict:
    """Parse and check the source, open the engine and the source, then ``run_loop``.

    Args:
        cfg: engine, source and loop settings.
        sinks_factory: called with the recording frame rate (the source's, or 30) once the source is open;
            returns the sinks. Sinks that check paths should be built (and checked) before, by the caller.
        stopper: stop from outside (signals).
        on_event: warnings.

    Returns:
        ``run_loop``'s summary.
    """
    from edgeres.engine import open_engine

    spec = parse_source(cfg.source.source)
    check_options(spec, cfg)
    engine = open_engine(cfg.engine, threads=cfg.threads, spinning=cfg.spinning)
    make_postprocess(engine, cfg.loop)  # refuse an unknown task or bad detection settings before opening the source
    reader = make_reader(spec, cfg.source)
    reader.open()
    try:
        fps = cfg.source.fps or getattr(reader, "fps", None) or 30.0
        sinks = sinks_factory(fps)
    except BaseException:
        reader.close()
        raise
    return run_loop(engine, reader, spec, sinks, cfg.loop, stopper, on_event)


@contextlib.contextmanager
def stop_on_signals(stopper: Stopper):
    """While inside, SIGINT and SIGTERM stop the loop cleanly (a second Ctrl-C interrupts at once).

    Only usable from the main thread (Python delivers signals there).
    """
    def handler(signum, frame):
        if signum == signal.SIGINT and stopper.is_set():
            raise KeyboardInterrupt
        stopper.request(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopper
    finally:
        for s, h in old.items():
            signal.signal(s, h)

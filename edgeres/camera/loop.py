"""The pipelined camera loop over one or many streams: capture | batched inference | per-stream results.

- capture: one thread per stream (``edgeres.camera.capture``) with its own newest-frame-wins slot (or a
  blocking slot for files and image folders, so every frame is processed), reconnects and pacing.
- inference: one thread (``edgeres.camera.inference``) takes the newest unprocessed frame of each stream,
  pre-processes them (the shared ``edgeres.processing`` code) and runs them through the engine as one batch;
  it also notices streams that stay silent longer than ``stall_timeout``.
- results: the calling thread (``edgeres.camera.results``) post-processes each frame, draws its stream's
  overlays and feeds the sinks, so a window lives on the main thread and signal handlers run promptly.

Stopping (max frames, duration, the end of every source, Ctrl-C/SIGTERM through ``stop_on_signals``, a
window's q) sets one event; every wait is bounded, the threads are joined with deadlines, and the sinks are
always closed, so recordings are finalized however the loop ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgeres.camera.capture import CaptureWorker, EventFn, Frame
from edgeres.camera.inference import Batching, InferenceWorker, Lane, StallError, batching_for, zero_batch
from edgeres.camera.overlays import OverlayConfig
from edgeres.camera.readers import make_reader, opencv_log_level
from edgeres.camera.results import STAGES, TASKS, ResultStage, make_postprocess
from edgeres.camera.slots import FrameSlot, SlotClosed, Stopper
from edgeres.camera.sources import SourceConfig, SourceOpenError, Stream, plan_streams
from edgeres.errors import EdgeresError

__all__ = [
    "STAGES",
    "TASKS",
    "CameraConfig",
    "EventFn",
    "Frame",
    "FrameSlot",
    "LoopConfig",
    "Rates",
    "SlotClosed",
    "StallError",
    "Stopper",
    "make_postprocess",
    "run_camera",
    "run_loop",
    "run_streams",
    "stop_on_signals",
]


@dataclass
class LoopConfig:
    """When to stop, what to compute and how to batch; see ``run_streams``."""

    max_frames: int | None = None  # processed frames, all streams together
    duration: float | None = None
    realtime: bool = False
    top_k: int = 5
    score_threshold: float | None = None  # detect: None = the engine manifest's default
    nms_iou: float | None = None
    stall_timeout: float = 20.0  # 0: wait for frames forever
    overlays: OverlayConfig = field(default_factory=OverlayConfig)
    max_batch_wait: float = 0.01  # seconds to wait for more streams' frames once one is waiting
    max_batch: int | None = None  # None: the engine's largest batch (never more than the streams)


class Rates(float):
    """The recording frame rate handed to a sinks factory (the fastest stream's), carrying each stream's own in
    ``per_stream`` (name -> fps) for sinks that record every stream separately."""

    per_stream: dict[str, float]

    def __new__(cls, per_stream: dict[str, float]):
        obj = super().__new__(cls, max(per_stream.values()))
        obj.per_stream = dict(per_stream)
        return obj


def run_loop(
    engine, reader, spec, sinks: list, cfg: LoopConfig, stopper: Stopper | None = None, on_event: EventFn | None = None
) -> dict:
    """``run_streams`` for one opened source (named cam0)."""
    return run_streams(engine, [(Stream("cam0", spec), reader)], sinks, cfg, stopper, on_event)


def run_streams(
    engine,
    opened: list[tuple[Stream, object]],
    sinks: list,
    cfg: LoopConfig,
    stopper: Stopper | None = None,
    on_event: EventFn | None = None,
    batching: Batching | None = None,
) -> dict:
    """Run the loop over opened sources until a stop condition; close the sinks however it ends.

    Args:
        engine: an ``edgeres.engine.Engine`` (not yet activated).
        opened: (stream, reader) pairs; a reader is opened (``make_reader(...).open()``), or None-opened live
            reader whose first open failed (its capture thread starts by reconnecting).
        sinks: objects with ``write(record, image)`` / ``close()`` / ``needs_image``; each record is a dict:
            stream, frame, source_ts, task, batch, predictions, times_ms.
        cfg: stop conditions, top-k, overlays, realtime pacing, batching.
        stopper: set it from elsewhere (signals, another thread) to stop.
        on_event: called with (level, message) for warnings (reconnects, decode errors, stalled streams).
        batching: how to batch (default: from the engine and ``cfg``).

    Returns:
        The summary: totals over all streams (frames read/processed/dropped, decode errors, reconnects, FPS,
        latency stats (ms) per stage and capture-to-result), why the loop stopped, the batching, and one row
        per stream in ``streams`` with the same counts, its FPS and its latency stats.

    Raises:
        StallError: every source stayed silent longer than ``cfg.stall_timeout``.
        EdgeresError: an unknown-task engine.
    """
    from edgeres.bench import latency_stats

    on_event = on_event or (lambda level, message: None)
    stopper = stopper or Stopper()
    names = [stream.name for stream, _ in opened]
    multi = len(opened) > 1
    results = ResultStage(make_postprocess(engine, cfg), engine.task, sinks, cfg, names)
    batching = batching or batching_for(engine, len(opened), cfg.max_batch_wait, cfg.max_batch)
    pcfg = engine.preprocess
    ready = threading.Event()
    out_slot = FrameSlot(newest_wins=False)
    slots = [FrameSlot(newest_wins=stream.spec.live or cfg.realtime, ready=ready) for stream, _ in opened]

    with engine, opencv_log_level("ERROR"):
        engine.runner.infer(zero_batch(pcfg, batching.max_batch))  # warm-up at the batch used, untimed
        captures = []
        for n, ((stream, reader), slot) in enumerate(zip(opened, slots, strict=True)):
            captures.append(
                CaptureWorker(
                    reader,
                    stream.spec,
                    slot,
                    stopper,
                    cfg.realtime and not stream.spec.live,
                    on_event,
                    stream=n,
                    label=f"{stream.name}: " if multi else "",
                    opened=getattr(reader, "is_open", True),
                )
            )
        now = time.perf_counter()
        lanes = [
            Lane(slot, capture, (f"{stream.name} ({stream.describe()})" if multi else stream.describe()), now)
            for (stream, _), slot, capture in zip(opened, slots, captures, strict=True)
        ]
        infer = InferenceWorker(
            engine.runner, pcfg, lanes, ready, out_slot, stopper, cfg.stall_timeout, batching, on_event
        )
        start = time.perf_counter()
        for capture in captures:
            capture.start()
        infer.start()
        try:
            while True:
                if cfg.duration is not None and time.perf_counter() - start >= cfg.duration:
                    stopper.request("duration")
                if stopper.is_set():
                    break
                try:
                    frames = out_slot.get(0.1)
                except SlotClosed:
                    ended = all(c.ended for c in captures)
                    stopper.request(("end of sources" if multi else "end of source") if ended else "source stopped")
                    break
                if frames is None:
                    continue
                if cfg.max_frames is not None:
                    frames = frames[: cfg.max_frames - results.processed]
                results.handle_batch(frames)
                if results.outputs_closed:
                    stopper.request("output closed")
                if cfg.max_frames is not None and results.processed >= cfg.max_frames:
                    stopper.request("max frames")
        finally:
            stopper.request("stopped")
            for slot in (*slots, out_slot):
                slot.close()
            try:
                results.close_sinks()  # first: only this thread writes them, and a recording must be finalized
            finally:
                infer.join(10.0)
                for (stream, reader), capture in zip(opened, captures, strict=True):
                    capture.join(reader.cfg.read_timeout + 2.0)
                    if capture.is_alive():
                        on_event(
                            "warning",
                            f"the capture thread is still blocked reading {stream.describe()}; left "
                            "to exit with the process",
                        )
    elapsed = time.perf_counter() - start
    for worker in (infer, *captures):
        if worker.error is not None:
            raise worker.error

    def stream_row(stream: Stream, reader, capture: CaptureWorker, slot: FrameSlot, stats) -> dict:
        return {
            "name": stream.name,
            "source": stream.describe(),
            "opened_with": getattr(reader, "opened_with", None),
            "frames_read": capture.read,
            "frames_processed": stats.processed,
            "frames_dropped": slot.dropped,
            "decode_errors": capture.decode_errors,
            "reconnects": capture.reconnects,
            "fps": stats.fps,
            "latency_ms": {k: latency_stats(v) for k, v in stats.lat.items() if v},
        }

    rows = [
        stream_row(stream, reader, capture, slot, stats)
        for (stream, reader), capture, slot, stats in zip(opened, captures, slots, results.streams, strict=True)
    ]
    total = {k: sum(r[k] for r in rows) for k in ("frames_read", "frames_dropped", "decode_errors", "reconnects")}
    return {
        "source": rows[0]["source"] if not multi else f"{len(rows)} streams",
        "opened_with": rows[0]["opened_with"],
        "task": engine.task,
        "engine": str(engine.engine_file),
        **total,
        "frames_processed": results.processed,
        "seconds": round(elapsed, 3),
        "fps": results.fps,
        "stopped_by": stopper.reason,
        "latency_ms": {k: latency_stats(v) for k, v in results.lat.items() if v},
        "batching": {
            "max_batch": batching.max_batch,
            "fixed": batching.fixed,
            "max_wait_ms": round(batching.max_wait * 1e3, 3),
            "batches": infer.batches,
            "mean_batch": round(infer.batched_frames / infer.batches, 3) if infer.batches else None,
        },
        "streams": rows,
    }


@dataclass
class CameraConfig:
    """Everything ``edgeres camera`` needs; the CLI only fills this in.

    ``source`` holds the options every source is opened with; ``sources`` lists the run's sources
    (``SOURCE`` or ``NAME=SOURCE``); without it the run reads ``source.source`` alone.
    """

    engine: Path
    source: SourceConfig
    loop: LoopConfig = field(default_factory=LoopConfig)
    threads: int | None = None
    spinning: bool = False  # idle ONNX Runtime threads would take the cores capture and rendering need
    sources: list[str] | None = None


def check_options(spec, cfg: CameraConfig) -> None:
    """Reject option combinations that do not apply to this source (never silently ignore them).

    Raises:
        EdgeresError: ``--realtime`` or ``--fps`` with a live source, or non-positive limits.
    """
    if spec.live and cfg.loop.realtime:
        raise EdgeresError(
            f"--realtime paces files and image folders; {spec.describe()} is live and already drops old frames"
        )
    if spec.live and cfg.source.fps is not None:
        raise EdgeresError(f"--fps sets the rate of image folders; {spec.describe()} has its own")
    if spec.kind == "file" and cfg.source.fps is not None:
        raise EdgeresError("--fps sets the rate of image folders; a video file plays at its own")
    for name, value in (("--max-frames", cfg.loop.max_frames), ("--duration", cfg.loop.duration)):
        if value is not None and value <= 0:
            raise EdgeresError(f"{name} must be positive, got {value}")
    if cfg.loop.max_batch_wait < 0:
        raise EdgeresError(f"--max-batch-wait must be 0 or more milliseconds, got {cfg.loop.max_batch_wait * 1e3:g}")


def plan_run(cfg: CameraConfig) -> list[Stream]:
    """The run's streams, parsed, named and checked against the options.

    Raises:
        EdgeresError: a bad or repeated source, or an option that does not apply to one of them.
    """
    streams = plan_streams(cfg.sources if cfg.sources is not None else [cfg.source.source])
    for stream in streams:
        check_options(stream.spec, cfg)
    return streams


def open_streams(streams: list[Stream], cfg: SourceConfig, on_event: EventFn) -> list[tuple[Stream, object]]:
    """Open every stream at once (each open has its own deadline, so N dead cameras cost one timeout).

    With several streams, a live stream that can reconnect (camera, network stream, CSI) and fails to open
    is reported and started reconnecting: the others run. Anything else that fails to open stops the run.

    Raises:
        SourceOpenError: a source failed to open (the only one, or one that cannot reconnect).
    """
    readers = [make_reader(s.spec, dataclasses.replace(cfg, source=s.spec.text)) for s in streams]
    errors: list[BaseException | None] = [None] * len(streams)

    def open_one(n: int) -> None:
        try:
            readers[n].open()
        except BaseException as exc:
            errors[n] = exc

    threads = [
        threading.Thread(target=open_one, args=(n,), name="edgeres-open-all", daemon=True) for n in range(len(streams))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = [(s, e) for s, e in zip(streams, errors, strict=True) if e is not None]
    fatal = [
        (s, e) for s, e in failed if len(streams) == 1 or not isinstance(e, SourceOpenError) or not s.spec.reconnects
    ]
    if fatal:
        for reader, error in zip(readers, errors, strict=True):
            if error is None:
                reader.close()
        stream, exc = fatal[0]
        if len(streams) > 1 and isinstance(exc, EdgeresError):
            raise type(exc)(f"stream '{stream.name}': {exc}") from None
        raise exc
    for stream, exc in failed:
        on_event("warning", f"{stream.name}: {exc}; the other streams start, this one keeps reconnecting")
    for reader, error in zip(readers, errors, strict=True):
        reader.is_open = error is None
    return list(zip(streams, readers, strict=True))


def run_camera(
    cfg: CameraConfig,
    sinks_factory: Callable[[float], list],
    stopper: Stopper | None = None,
    on_event: EventFn | None = None,
) -> dict:
    """Parse and check the sources, open the engine and the sources, then ``run_streams``.

    Args:
        cfg: engine, sources and loop settings.
        sinks_factory: called once the sources are open with the recording frame rate (a ``Rates``: the
            fastest stream's rate, or 30; each stream's in ``per_stream``); returns the sinks. Sinks that check
            paths should be built (and checked) before, by the caller.
        stopper: stop from outside (signals).
        on_event: warnings.

    Returns:
        ``run_streams``'s summary.
    """
    from edgeres.engine import open_engine

    on_event = on_event or (lambda level, message: None)
    streams = plan_run(cfg)
    engine = open_engine(cfg.engine, threads=cfg.threads, spinning=cfg.spinning)
    make_postprocess(engine, cfg.loop)  # refuse an unknown task or bad detection settings before opening a source
    batching = batching_for(engine, len(streams), cfg.loop.max_batch_wait, cfg.loop.max_batch)
    if len(streams) > batching.max_batch:
        on_event(
            "note",
            f"{len(streams)} streams and batches of at most {batching.max_batch} for {engine.name}: "
            f"each round runs {-(-len(streams) // batching.max_batch)} batches, streams taking turns",
        )
    opened = open_streams(streams, cfg.source, on_event)
    try:
        rates = {s.name: cfg.source.fps or getattr(r, "fps", None) or 30.0 for s, r in opened}
        sinks = sinks_factory(Rates(rates))
    except BaseException:
        for _, reader in opened:
            reader.close()
        raise
    return run_streams(engine, opened, sinks, cfg.loop, stopper, on_event, batching)


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

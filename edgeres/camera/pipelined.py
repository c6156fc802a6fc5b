"""The pipelined camera loop over opened sources: capture | batched inference | per-stream results.

- capture: one thread per stream (``edgeres.camera.capture``) with its own newest-frame-wins slot (or a
  blocking slot for files and image folders, so every frame is processed), reconnects and pacing.
- inference: one thread (``edgeres.camera.inference``) takes the newest unprocessed frame of each stream,
  pre-processes them (the shared ``edgeres.processing`` code) and runs them through the engine as one batch;
  it also notices streams that stay silent longer than ``stall_timeout``.
- results: the calling thread (``edgeres.camera.results``) decodes each frame with the engine's task, draws its
  stream's overlays and feeds the sinks, so a window lives on the main thread and signal handlers run promptly.

Stopping (max frames, duration, the end of every source, Ctrl-C/SIGTERM through ``stop_on_signals``, a
window's q, a recording that cannot be written) sets one event; every wait is bounded, the threads are joined
with deadlines, and the sinks are always closed, so recordings are finalized however the loop ends.
``edgeres.camera.loop`` plans and opens a run and calls ``run_streams``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from edgeres.camera.capture import CaptureWorker, EventFn
from edgeres.camera.inference import Batching, InferenceWorker, Lane, batching_for, zero_batch
from edgeres.camera.overlays import OverlayConfig
from edgeres.camera.readers import opencv_log_level
from edgeres.camera.results import ResultStage, make_postprocess
from edgeres.camera.slots import FrameSlot, SlotClosed, Stopper
from edgeres.camera.sources import Stream


@dataclass
class LoopConfig:
    """When to stop, what to compute and how to batch; see ``run_streams``."""

    max_frames: int | None = None  # processed frames, all streams together
    duration: float | None = None
    realtime: bool = False
    # Task-specific decoding options (``edgeres.tasks``); None: the task's default or the engine manifest's. A
    # task refuses one it does not take (``--top-k`` on a detector).
    top_k: int | None = None  # classify
    score_threshold: float | None = None  # detect
    nms_iou: float | None = None  # detect
    view: str | None = None  # segment: "overlay" or "mask"
    overlay_alpha: float | None = None  # segment
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
            stream, frame, source_ts, task, schema (the task's JSON form of ``predictions``), batch,
            predictions, times_ms.
        cfg: stop conditions, decoding options, overlays, realtime pacing, batching.
        stopper: set it from elsewhere (signals, another thread) to stop.
        on_event: called with (level, message) for warnings (reconnects, decode errors, stalled streams).
        batching: how to batch (default: from the engine and ``cfg``).

    Returns:
        The summary: totals over all streams (frames read/processed/dropped, decode errors, reconnects, FPS,
        latency stats (ms) per stage and capture-to-result), why the loop stopped, the batching, and one row
        per stream in ``streams`` with the same counts, its FPS and its latency stats.

    Raises:
        StallError: every source stayed silent longer than ``cfg.stall_timeout``.
        EdgeresError: an unknown-task engine or an option its task does not take.
    """
    on_event = on_event or (lambda level, message: None)
    stopper = stopper or Stopper()
    names = [stream.name for stream, _ in opened]
    multi = len(opened) > 1
    results = ResultStage(make_postprocess(engine, cfg), sinks, cfg, names, on_event)
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
                    stopper.request("recording failed" if results.failures and not results.sinks else "output closed")
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
            "latency_ms": {k: v.stats() for k, v in stats.lat.items() if v.count},
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
        "latency_ms": {k: v.stats() for k, v in results.lat.items() if v.count},
        "batching": {
            "max_batch": batching.max_batch,
            "fixed": batching.fixed,
            "max_wait_ms": round(batching.max_wait * 1e3, 3),
            "batches": infer.batches,
            "mean_batch": round(infer.batched_frames / infer.batches, 3) if infer.batches else None,
        },
        "streams": rows,
        "failures": results.failures,  # recordings that could not be written: the command exits non-zero
    }

"""The result stage: per-stream post-processing, overlays and sinks, on the calling thread; per-stream stats.

Each frame's record names its stream; every sink gets every record (``write(record, image)``) and keeps
per-stream state itself (a recording folder opens one file per stream, the live view one feed per stream).
Sinks with ``end_batch()`` hear when one engine batch is done (the tiled recording writes a frame then);
sinks with ``record_done(record)`` get each record again once its ``times_ms`` are complete (the live view).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np

from edgeres.camera.capture import Frame
from edgeres.camera.latency import LatencyRecorder
from edgeres.camera.overlays import Hud, render
from edgeres.camera.sinks import RecordingError
from edgeres.tasks import get_task
from edgeres.tasks.base import Task

STAGES = ("capture_wait", "preprocess", "inference", "postprocess", "render")


@dataclass(frozen=True)
class TaskOutputs:
    """An engine's task with the settings this run decodes and draws with (one frame at a time)."""

    task: Task
    class_names: list[str]
    input_hw: tuple[int, int]
    settings: dict

    def decode(self, outputs: np.ndarray, image_hw: tuple[int, int]):
        """One frame's raw outputs (batch of 1) -> its decoded prediction, in the frame's pixels."""
        return self.task.decode(outputs, [image_hw], self.input_hw, self.class_names, self.settings)[0]

    def to_json(self, prediction) -> list:
        return self.task.to_json(prediction, self.class_names)

    def draw(self, image: np.ndarray, prediction) -> None:
        self.task.draw(image, prediction, self.class_names, self.settings)


def task_options(cfg) -> dict:
    """The task-specific options of a ``LoopConfig`` (None where the user gave none)."""
    return {"top_k": cfg.top_k, "score_threshold": cfg.score_threshold, "nms_iou": cfg.nms_iou, "view": cfg.view,
            "overlay_alpha": cfg.overlay_alpha}


def make_postprocess(engine, cfg) -> TaskOutputs:
    """The engine's task (``edgeres.tasks``) with this run's decoding settings: the same decoder as ``predict``
    and ``eval``, with the engine manifest's settings unless the config overrides them.

    Raises:
        EdgeresError: an unknown task, an option the task does not take (``--top-k`` on a detector), or bad
            settings.
    """
    task = get_task(engine.task)
    options = task_options(cfg)
    task.check_options(options)
    settings = task.settings(engine.manifest, options)
    return TaskOutputs(task, list(engine.class_names), tuple(engine.preprocess.input_size), settings)


class StreamStats:
    """What one stream's results add up to: counts, latencies per stage, FPS and the on-frame HUD."""

    def __init__(self, name: str):
        self.name = name
        self.hud = Hud()
        self.lat: dict[str, LatencyRecorder] = {s: LatencyRecorder() for s in (*STAGES, "capture_to_result")}
        self.processed = 0
        self.first_done: float | None = None
        self.last_done: float | None = None
        self.last_record: dict | None = None

    def add(self, frame: Frame, record: dict, done: float) -> None:
        for k, v in frame.times.items():
            self.lat[k].add(v)
        self.hud.update(record["times_ms"], done)
        self.processed += 1
        self.first_done = self.first_done or done
        self.last_done = done
        self.last_record = record

    @property
    def fps(self) -> float | None:
        """Processed frames per second, first result to last (start-up and warm-up left out)."""
        return rate(self.processed, self.first_done, self.last_done)


def rate(count: int, first: float | None, last: float | None) -> float | None:
    if count < 2 or first is None or last is None or last <= first:
        return None
    return (count - 1) / (last - first)


class ResultStage:
    """Post-process, draw and feed the sinks, one batch at a time, on the calling thread; keeps the stats."""

    def __init__(self, outputs: TaskOutputs, sinks: list, cfg, names: list[str] | None = None, on_event=None):
        self.outputs, self.cfg = outputs, cfg
        self.on_event = on_event or (lambda level, message: None)
        self.names = names or ["cam0"]
        self.failures: list[str] = []  # recordings that failed (disk full, size limit): the run exits non-zero
        self._set_sinks(list(sinks))
        self.streams = [StreamStats(name) for name in self.names]
        self.processed = 0
        self.first_done: float | None = None
        self.last_done: float | None = None

    def _set_sinks(self, sinks: list) -> None:
        self.sinks = sinks
        self.image_sinks = [s for s in sinks if s.needs_image]
        self.batch_sinks = [s for s in sinks if hasattr(s, "end_batch")]
        self.done_sinks = [s for s in sinks if hasattr(s, "record_done")]  # want the record with its times
        self.draw = bool(self.image_sinks) and self.cfg.overlays.any

    def _failed(self, sink, error: RecordingError) -> None:
        """A recording could not be written: it stops (its unfinished file removed), the other outputs go on;
        with no output left the loop stops. The run exits non-zero either way (``failures``)."""
        with contextlib.suppress(Exception):
            sink.close()  # the other files of a per-stream recording
        self._set_sinks([s for s in self.sinks if s is not sink])
        self.failures.append(str(error))
        if self.sinks:
            self.on_event("error", f"{error}; the other outputs go on")

    def _feed(self, sink, method: str, *args) -> None:
        try:
            getattr(sink, method)(*args)
        except RecordingError as error:
            self._failed(sink, error)

    def handle_batch(self, frames: list[Frame]) -> None:
        for frame in frames:
            self.handle(frame)
        for sink in self.batch_sinks:
            self._feed(sink, "end_batch")

    def handle(self, frame: Frame) -> None:
        stats = self.streams[frame.stream]
        t0 = time.perf_counter()
        # The decoded prediction stays beside its record until the frame is drawn: the task draws from it,
        # never from the JSON form.
        prediction = self.outputs.decode(frame.outputs, frame.image.shape[:2])
        task = self.outputs.task
        record = {
            "stream": stats.name,
            "frame": frame.index,
            "source_ts": round(frame.source_ts, 6),
            "task": task.name,
            "schema": task.json_schema,
            "batch": frame.batch,
            "predictions": self.outputs.to_json(prediction),
        }
        t1 = time.perf_counter()
        image = frame.image
        if self.draw:
            image = render(image, self.outputs, prediction, stats.hud, self.cfg.overlays)
        for sink in self.image_sinks:
            self._feed(sink, "write", record, image)
        t2 = time.perf_counter()
        frame.times.update(postprocess=t1 - t0, render=t2 - t1, capture_to_result=t2 - frame.captured)
        record["times_ms"] = {k: round(v * 1e3, 3) for k, v in frame.times.items()}
        for sink in self.sinks:
            if not sink.needs_image:
                sink.write(record, None)
        for sink in self.done_sinks:
            sink.record_done(record)
        stats.add(frame, record, t2)
        self.processed += 1
        self.first_done = self.first_done or t2
        self.last_done = t2

    @property
    def outputs_closed(self) -> bool:
        """An output went away (a window closed, stdout's reader gone), or a failed recording was the last."""
        return any(getattr(s, "closed", False) for s in self.sinks) or (bool(self.failures) and not self.sinks)

    @property
    def fps(self) -> float | None:
        """All streams' processed frames per second, first result to last."""
        return rate(self.processed, self.first_done, self.last_done)

    @property
    def lat(self) -> dict[str, LatencyRecorder]:
        """Every stream's latencies per stage, together."""
        merged = {k: LatencyRecorder() for k in self.streams[0].lat}
        for stream in self.streams:
            for k, recorder in stream.lat.items():
                merged[k].merge(recorder)
        return merged

    def close_sinks(self) -> None:
        """Close every sink (a recording is finalized here), even when one of them fails."""
        failure = None
        for sink in self.sinks:
            try:
                sink.close()
            except RecordingError as error:  # the finished file did not fit: reported like one while recording
                self.failures.append(str(error))
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

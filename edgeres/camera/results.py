"""The result stage: per-stream post-processing, overlays and sinks, on the calling thread; per-stream stats.

Each frame's record names its stream; every sink gets every record (``write(record, image)``) and keeps
per-stream state itself (a recording folder opens one file per stream, the live view one feed per stream).
Sinks with ``end_batch()`` hear when one engine batch is done (the tiled recording writes a frame then);
sinks with ``record_done(record)`` get each record again once its ``times_ms`` are complete (the live view).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edgeres.camera.capture import Frame
from edgeres.camera.overlays import Hud, render
from edgeres.errors import EdgeresError
from edgeres.processing import softmax, topk

STAGES = ("capture_wait", "preprocess", "inference", "postprocess", "render")
TASKS = ("classify", "detect")


def make_postprocess(engine, cfg) -> Callable[[np.ndarray, tuple[int, int]], list[dict]]:
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
            return [
                {"label": class_names[i], "index": int(i), "score": float(s)}
                for i, s in zip(idx[0], val[0], strict=True)
            ]

        return classify
    if engine.task == "detect":
        from edgeres.evaluate_detect import decode_maps
        from edgeres.predict import detection_settings, detections_to_json

        settings = detection_settings(engine.manifest, cfg.score_threshold, cfg.nms_iou)
        input_hw = engine.preprocess.input_size

        def detect(maps: np.ndarray, image_hw: tuple[int, int]) -> list[dict]:
            return detections_to_json(
                decode_maps(maps, len(class_names), input_hw, [image_hw], settings)[0], class_names
            )

        return detect
    raise EdgeresError(f"unknown engine task '{engine.task}'; accepted: {', '.join(TASKS)}")


class StreamStats:
    """What one stream's results add up to: counts, latencies per stage, FPS and the on-frame HUD."""

    def __init__(self, name: str):
        self.name = name
        self.hud = Hud()
        self.lat: dict[str, list[float]] = {s: [] for s in (*STAGES, "capture_to_result")}
        self.processed = 0
        self.first_done: float | None = None
        self.last_done: float | None = None
        self.last_record: dict | None = None

    def add(self, frame: Frame, record: dict, done: float) -> None:
        for k, v in frame.times.items():
            self.lat[k].append(v)
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

    def __init__(
        self,
        post: Callable[[np.ndarray, tuple[int, int]], list[dict]],
        task: str,
        sinks: list,
        cfg,
        names: list[str] | None = None,
    ):
        self.post, self.task, self.sinks, self.cfg = post, task, sinks, cfg
        self.names = names or ["cam0"]
        self.image_sinks = [s for s in sinks if s.needs_image]
        self.batch_sinks = [s for s in sinks if hasattr(s, "end_batch")]
        self.done_sinks = [s for s in sinks if hasattr(s, "record_done")]  # want the record with its times
        self.draw = bool(self.image_sinks) and cfg.overlays.any
        self.streams = [StreamStats(name) for name in self.names]
        self.processed = 0
        self.first_done: float | None = None
        self.last_done: float | None = None

    def handle_batch(self, frames: list[Frame]) -> None:
        for frame in frames:
            self.handle(frame)
        for sink in self.batch_sinks:
            sink.end_batch()

    def handle(self, frame: Frame) -> None:
        stats = self.streams[frame.stream]
        t0 = time.perf_counter()
        record = {
            "stream": stats.name,
            "frame": frame.index,
            "source_ts": round(frame.source_ts, 6),
            "task": self.task,
            "batch": frame.batch,
            "predictions": self.post(frame.outputs, frame.image.shape[:2]),
        }
        t1 = time.perf_counter()
        image = frame.image
        if self.draw:
            image = render(image, record, stats.hud, self.cfg.overlays, min(self.cfg.top_k, 5))
        for sink in self.image_sinks:
            sink.write(record, image)
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
        return any(getattr(s, "closed", False) for s in self.sinks)

    @property
    def fps(self) -> float | None:
        """All streams' processed frames per second, first result to last."""
        return rate(self.processed, self.first_done, self.last_done)

    @property
    def lat(self) -> dict[str, list[float]]:
        """Every stream's latencies per stage, together."""
        return {k: [v for s in self.streams for v in s.lat[k]] for k in self.streams[0].lat}

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

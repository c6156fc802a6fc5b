"""On-frame overlays: the prediction as the engine's task draws it (``edgeres.tasks``), FPS, a latency panel.

Drawing is plain OpenCV on the BGR frame, in place. Text scales with the frame height so a 320x240 test
video and a 1080p camera both stay readable. The numbers shown are smoothed over the last frames
(``Hud``) so they can be read while the loop runs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from edgeres.drawing import WHITE as _WHITE
from edgeres.drawing import draw_panel
from edgeres.errors import EdgeresError

OVERLAYS = ("labels", "fps", "latency")
PANEL_STAGES = (
    ("capture_wait", "capture wait"),
    ("preprocess", "pre-process"),
    ("inference", "inference"),
    ("postprocess", "post-process"),
    ("render", "render"),
    ("capture_to_result", "capture-to-result"),
)


@dataclass(frozen=True)
class OverlayConfig:
    """Which overlays to draw."""

    labels: bool = True
    fps: bool = True
    latency: bool = True

    @property
    def any(self) -> bool:
        return self.labels or self.fps or self.latency

    @classmethod
    def parse(cls, text: str) -> OverlayConfig:
        """``labels,fps,latency`` (any subset), ``all`` or ``none``.

        Raises:
            EdgeresError: an unknown overlay name.
        """
        names = {n.strip().lower() for n in text.split(",") if n.strip()}
        if names == {"none"}:
            return cls(False, False, False)
        if names == {"all"}:
            return cls()
        unknown = sorted(names - set(OVERLAYS))
        if unknown or not names:
            raise EdgeresError(
                f"unknown --overlay '{text}'; accepted: a comma list of {', '.join(OVERLAYS)}, or all, or none"
            )
        return cls(*(n in names for n in OVERLAYS))


class Hud:
    """Smoothed FPS and per-stage latencies for display: medians over the last ``window`` frames."""

    def __init__(self, window: int = 30):
        self.done: deque[float] = deque(maxlen=window)
        self.times: dict[str, deque[float]] = {s: deque(maxlen=window) for s, _ in PANEL_STAGES}

    def update(self, times_ms: dict[str, float], done_at: float) -> None:
        """Add one processed frame's stage times (ms) and the moment (s) it finished."""
        self.done.append(done_at)
        for stage, value in times_ms.items():
            if stage in self.times:
                self.times[stage].append(value)

    @property
    def fps(self) -> float | None:
        if len(self.done) < 2 or self.done[-1] <= self.done[0]:
            return None
        return (len(self.done) - 1) / (self.done[-1] - self.done[0])

    def median_ms(self, stage: str) -> float | None:
        values = self.times.get(stage)
        return float(np.median(values)) if values else None


def render(image: np.ndarray, outputs, prediction, hud: Hud, cfg: OverlayConfig) -> np.ndarray:
    """Draw the enabled overlays for one result on its frame (in place) and return the frame.

    Args:
        image: the BGR frame the result belongs to.
        outputs: the run's ``edgeres.camera.results.TaskOutputs`` (its task draws the prediction).
        prediction: the frame's decoded prediction (not its JSON form).
        hud: smoothed numbers of the frames before it.
        cfg: which overlays.
    """
    if cfg.labels:
        outputs.draw(image, prediction)
    if cfg.fps:
        fps = hud.fps
        draw_panel(image, [(f"{fps:.1f} FPS" if fps is not None else "-- FPS", _WHITE)], "tr")
    if cfg.latency:
        lines = []
        for stage, name in PANEL_STAGES:
            ms = hud.median_ms(stage)
            if ms is not None:
                lines.append((f"{name} {ms:.1f} ms", _WHITE))
        draw_panel(image, lines, "bl")
    return image

"""On-frame overlays: top-k labels (classification) or boxes with labels (detection), FPS, a latency panel.

Drawing is plain OpenCV on the BGR frame, in place. Text scales with the frame height so a 320x240 test
video and a 1080p camera both stay readable. The numbers shown are smoothed over the last frames
(``Hud``) so they can be read while the loop runs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from edgeres.drawing import BLACK as _BLACK
from edgeres.drawing import GREEN as _GREEN
from edgeres.drawing import WHITE as _WHITE
from edgeres.drawing import draw_panel
from edgeres.drawing import text_scale as _scale
from edgeres.errors import EdgeresError, require

OVERLAYS = ("labels", "fps", "latency")
PANEL_STAGES = (
    ("capture_wait", "capture wait"),
    ("preprocess", "pre-process"),
    ("inference", "inference"),
    ("postprocess", "post-process"),
    ("render", "render"),
    ("capture_to_result", "capture-to-result"),
)
_YELLOW = (0, 215, 255)


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


def draw_topk(image: np.ndarray, predictions: list[dict], k: int = 3) -> None:
    """The top-k labels with scores, best first (the best in green), top left.

    Args:
        image: BGR uint8 frame, drawn on in place.
        predictions: [{"label", "score", ...}], best first.
        k: how many to show.
    """
    lines = [(f"{p['label']}  {p['score']:.2f}", _GREEN if i == 0 else _WHITE) for i, p in enumerate(predictions[:k])]
    draw_panel(image, lines, "tl")


def draw_boxes(image: np.ndarray, predictions: list[dict]) -> None:
    """Boxes with label and score (detection predictions carry ``box`` = [x0, y0, x1, y1] in pixels).

    Args:
        image: BGR uint8 frame, drawn on in place.
        predictions: [{"label", "score", "box"}].
    """
    cv2 = require("cv2", "desktop")
    scale = _scale(image)
    thick = max(1, round(2 * scale))
    for p in predictions:
        x0, y0, x1, y1 = (round(float(v)) for v in p["box"])
        cv2.rectangle(image, (x0, y0), (x1, y1), _YELLOW, thick)
        text = f"{p['label']} {p['score']:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, thick)
        ty = max(th + 4, y0)
        cv2.rectangle(image, (x0, ty - th - 4), (x0 + tw + 4, ty), _YELLOW, -1)
        cv2.putText(image, text, (x0 + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, _BLACK, thick, cv2.LINE_AA)


def render(image: np.ndarray, record: dict, hud: Hud, cfg: OverlayConfig, top_k: int = 3) -> np.ndarray:
    """Draw the enabled overlays for one result on its frame (in place) and return the frame.

    Args:
        image: the BGR frame the result belongs to.
        record: the loop's result for it (``task`` and ``predictions``).
        hud: smoothed numbers of the frames before it.
        cfg: which overlays.
        top_k: labels shown for classification.
    """
    if cfg.labels:
        if record["task"] == "detect":
            draw_boxes(image, record["predictions"])
        else:
            draw_topk(image, record["predictions"], top_k)
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

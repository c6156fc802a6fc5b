"""The scales JSON: the single source of truth for an INT8 model.

Per-tensor activation amax (keyed by tensor name of the FP32 ONNX), per-channel weight amax (keyed
by initializer name, with the channel axis), the model and calibration-data hashes, the method.
Scale = amax / 127, zero point 0 (TensorRT's symmetric int8).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeres.errors import EdgeresError
from edgeres.fileio import write_json_atomic

FORMAT = "edgeres-scales"
VERSION = 1
QMAX = 127


@dataclass
class Scales:
    """Activation and weight ranges of one model, with what they were computed from."""

    activations: dict[str, dict] = field(default_factory=dict)  # name -> {"amax": float, "role": trt|cpu|cache}
    weights: dict[str, dict] = field(default_factory=dict)  # name -> {"amax": [float...], "axis": int}
    method: str = "entropy"
    percentile: float | None = None
    model: dict = field(default_factory=dict)  # checkpoint path + sha256, onnx sha256, arch, classes
    data: dict = field(default_factory=dict)  # folder, sha256, images
    source: str = "calibration"  # or "qat"
    created: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

    def scale(self, tensor: str) -> float:
        return self.activations[tensor]["amax"] / QMAX

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    def save(self, path: Path) -> None:
        write_json_atomic(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: Path) -> Scales:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise EdgeresError(f"cannot read scales file {path}: {exc}") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise EdgeresError(f"{path} is not an edgeres scales file")
        if not isinstance(d.get("version", 0), int):
            raise EdgeresError(f"{path} has a scales format version that is not a number; recalibrate")
        if d.get("version", 0) > VERSION:
            raise EdgeresError(f"{path} has scales format {d['version']}, newer than this edgeres reads; upgrade")
        d.pop("format")
        d.pop("version")
        problem = _shape_problem(d)
        if problem:
            raise EdgeresError(f"{path} is not a usable scales file ({problem}); recalibrate with 'edgeres calibrate'")
        return cls(**d)

    def check_model(self, checkpoint_sha256: str, what: str) -> None:
        """Refuse scales calibrated for another model."""
        if self.model.get("sha256") != checkpoint_sha256:
            raise EdgeresError(
                f"{what} was calibrated for another model (checkpoint sha256 {str(self.model.get('sha256'))[:12]}…, "
                f"this one is {checkpoint_sha256[:12]}…); recalibrate with 'edgeres calibrate'"
            )


def _shape_problem(d: dict) -> str | None:
    """What is wrong with a scales document's fields (edited by hand, cut short, from another tool), or None.

    Checked once on load so that no later step meets a string where a range should be."""
    import math

    known = set(Scales.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        return f"unknown fields {', '.join(unknown)}"

    def finite(v, low: float) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= low

    acts, weights = d.get("activations"), d.get("weights")
    if not isinstance(acts, dict) or not acts:
        return "'activations' must map tensor names to ranges"
    for name, entry in acts.items():
        if not isinstance(entry, dict) or not finite(entry.get("amax"), 0.0) or entry["amax"] == 0:
            return f"activation '{name}' needs a finite positive 'amax', got {str(entry)[:60]}"
    if not isinstance(weights, dict) or not weights:
        return "'weights' must map initializer names to per-channel ranges"
    for name, entry in weights.items():
        amax = entry.get("amax") if isinstance(entry, dict) else None
        if not isinstance(amax, list) or not amax or not all(finite(v, 0.0) for v in amax):
            return f"weight '{name}' needs a list of finite non-negative 'amax' values"
        if entry.get("axis") not in (0, 1) or isinstance(entry.get("axis"), bool):
            return f"weight '{name}' has channel axis {entry.get('axis')!r}; accepted: 0 or 1"
    for key in ("model", "data"):
        if not isinstance(d.get(key, {}), dict):
            return f"'{key}' must be a mapping"
    for key in ("method", "source", "created"):
        if key in d and not isinstance(d[key], str):
            return f"'{key}' must be text"
    if d.get("percentile") is not None and not finite(d["percentile"], 0.0):
        return "'percentile' must be a number"
    return None


def data_hash(paths: list[Path], root: Path) -> str:
    """SHA-256 over the calibration images' relative paths and bytes (order-independent)."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda q: str(q)):
        h.update(str(Path(p).relative_to(root) if Path(p).is_relative_to(root) else Path(p).name).encode())
        h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return h.hexdigest()

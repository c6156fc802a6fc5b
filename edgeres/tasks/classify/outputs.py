"""A classifier's outputs for people and programs: top-k decoding, its JSON form, the label panel."""

from __future__ import annotations

import numpy as np

from edgeres.errors import EdgeresError

DEFAULT_TOP_K = 5


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def topk(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest entries per row, best first."""
    k = min(k, probs.shape[-1])
    idx = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    return idx, np.take_along_axis(probs, idx, axis=-1)


def settings(manifest: dict, overrides: dict) -> dict:
    top_k = overrides.get("top_k") or DEFAULT_TOP_K
    if top_k < 1:
        raise EdgeresError(f"--top-k must be at least 1, got {top_k}")
    return {"top_k": int(top_k)}


def decode(outputs: np.ndarray, image_hws, input_hw, class_names: list[str], settings: dict) -> list:
    """Logits -> per image a list of (class index, probability), best first."""
    idx, val = topk(softmax(np.asarray(outputs, np.float32)), settings.get("top_k", DEFAULT_TOP_K))
    return [list(zip(ri.tolist(), rv.tolist(), strict=True)) for ri, rv in zip(idx, val, strict=True)]


def to_json(prediction, class_names: list[str]) -> list[dict]:
    return [{"label": class_names[i], "index": int(i), "score": round(float(s), 6)} for i, s in prediction]


def draw(image: np.ndarray, prediction, class_names: list[str], settings: dict) -> np.ndarray:
    """The top labels with scores, best first (the best in green), top left; at most 5 lines."""
    from edgeres.drawing import GREEN, WHITE, draw_panel

    lines = [(f"{class_names[i]}  {s:.2f}", GREEN if n == 0 else WHITE) for n, (i, s) in enumerate(prediction[:5])]
    draw_panel(image, lines, "tl")
    return image

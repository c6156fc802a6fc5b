"""Segmentation metrics from one confusion matrix, as torchvision's segmentation reference computes them.

``confusion[t, p]`` counts pixels of true class t predicted as p; pixels marked 255 (ignore) in the truth are
left out. From it: pixel accuracy (diagonal / all), per-class accuracy (diagonal / row), per-class IoU
(diagonal / (row + column - diagonal)). A class that appears in neither truth nor prediction has no IoU (0/0):
it is reported as None and left out of the mean, so a class absent from the val images does not drag mIoU
towards 0 (torchvision's reference would give NaN there). A class in the prediction only has IoU 0 and counts.
"""

from __future__ import annotations

import numpy as np

from edgeres.tasks.segment.classes import IGNORE


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows true class, columns predicted; truth 255 (or any value >= C) is ignored."""
    truth = np.asarray(truth).reshape(-1).astype(np.int64)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    if truth.shape != pred.shape:
        raise ValueError(f"truth has {truth.size} pixels, prediction {pred.size}")
    keep = truth < num_classes
    return np.bincount(num_classes * truth[keep] + pred[keep], minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def segmentation_metrics(confusion: np.ndarray, class_names: list[str]) -> dict:
    """mIoU, per-class IoU, pixel accuracy and mean class accuracy from a confusion matrix.

    Returns:
        A JSON-able dict; every value is a fraction in [0, 1] (None where undefined, see the module docstring).
    """
    h = np.asarray(confusion, np.float64)
    diag = np.diag(h)
    rows, cols = h.sum(1), h.sum(0)
    union = rows + cols - diag
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, diag / union, np.nan)
        acc = np.where(rows > 0, diag / rows, np.nan)
    total = h.sum()
    return {
        "task": "segment",
        "pixels": int(total),
        "miou": _mean(iou),
        "pixel_acc": float(diag.sum() / total) if total else 0.0,
        "mean_class_acc": _mean(acc),
        "classes_scored": int(np.isfinite(iou).sum()),
        "per_class": {
            name: {"iou": _value(iou[i]), "acc": _value(acc[i]), "pixels": int(rows[i])}
            for i, name in enumerate(class_names)
        },
        "confusion": h.astype(np.int64).tolist(),
        "class_names": list(class_names),
    }


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else 0.0


def _value(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


class SegmentScorer:
    """Decodes each batch's logits to class maps at the original image size and adds them to the confusion
    matrix against the eval set's masks, in order (the masks are read one at a time, never all kept)."""

    def __init__(self, data):
        self.data = data
        self.num_classes = len(data.class_names)
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.seen = 0

    def add(self, outputs: np.ndarray, image_hws) -> None:
        from edgeres.tasks.segment.outputs import class_maps

        for class_map in class_maps(np.asarray(outputs, np.float32), list(image_hws)):
            truth = self.data.mask(self.seen)
            self.confusion += confusion_matrix(truth, class_map, self.num_classes)
            self.seen += 1

    def result(self) -> dict:
        metrics = segmentation_metrics(self.confusion, self.data.class_names)
        metrics["images"] = self.seen
        return metrics


def summarize(metrics: dict) -> str:
    return (
        f"{metrics.get('images', 0)} images  mIoU {metrics['miou']:.4f}  pixel acc {metrics['pixel_acc']:.4f}  "
        f"mean class acc {metrics['mean_class_acc']:.4f}"
    )


def tables(metrics: dict) -> list:
    """Per-class IoU and accuracy (- where undefined), and the confusion matrix when it fits a terminal."""

    def fmt(v):
        return "-" if v is None else f"{v:.4f}"

    names = metrics["class_names"]
    rows = [
        [
            n,
            fmt(metrics["per_class"][n]["iou"]),
            fmt(metrics["per_class"][n]["acc"]),
            str(metrics["per_class"][n]["pixels"]),
        ]
        for n in names
    ]
    out = [("per class", ["class", "IoU", "accuracy", "true pixels"], rows)]
    if len(names) <= 12:
        confusion = zip(names, metrics["confusion"], strict=True)
        cm = [[n, *[str(v) if v else "." for v in row]] for n, row in confusion]
        out.append(("confusion matrix in pixels (rows: true, columns: predicted)", ["", *names], cm))
    return out


__all__ = ["IGNORE", "SegmentScorer", "confusion_matrix", "segmentation_metrics", "summarize", "tables"]

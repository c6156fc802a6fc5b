"""Classification metrics: top-1, top-5, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import numpy as np


def classification_metrics(labels: np.ndarray, logits: np.ndarray, class_names: list[str]) -> dict:
    """Top-1, top-5, per-class accuracy and the confusion matrix (rows: true, columns: predicted).

    Returns:
        A JSON-able dict; accuracies are percentages.
    """
    n, c = logits.shape
    pred = logits.argmax(axis=1)
    k = min(5, c)
    top5 = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    confusion = np.zeros((c, c), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {}
    for i, name in enumerate(class_names):
        total = int(confusion[i].sum())
        per_class[name] = {"images": total, "top1": 100.0 * confusion[i, i] / total if total else None}
    return {
        "task": "classify",
        "images": int(n),
        "top1": 100.0 * float((pred == labels).mean()) if n else 0.0,
        "top5": 100.0 * float((top5 == labels[:, None]).any(axis=1).mean()) if n else 0.0,
        "top5_k": k,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "class_names": list(class_names),
    }


class ClassifyScorer:
    """Collects logits batch by batch; the metrics and each image's predicted class at the end."""

    def __init__(self, data):
        self.data = data
        self.logits: list[np.ndarray] = []

    def add(self, outputs: np.ndarray, image_hws) -> None:
        self.logits.append(np.asarray(outputs, np.float32))

    def result(self) -> dict:
        c = len(self.data.class_names)
        logits = np.concatenate(self.logits) if self.logits else np.zeros((0, c), np.float32)
        metrics = classification_metrics(self.data.labels, logits, self.data.class_names)
        metrics["predictions"] = logits.argmax(1).tolist()
        return metrics


def summarize(metrics: dict) -> str:
    return f"{metrics['images']} images  top-1 {metrics['top1']:.2f}%  top-{metrics['top5_k']} {metrics['top5']:.2f}%"


def tables(metrics: dict) -> list:
    """Per-class accuracy, and the confusion matrix when it fits a terminal (20 classes or fewer)."""
    names = metrics["class_names"]
    rows = [[name, str(metrics["per_class"][name]["images"]),
             "-" if metrics["per_class"][name]["top1"] is None else f"{metrics['per_class'][name]['top1']:.2f}"]
            for name in names]
    out = [("per class", ["class", "images", "top-1 %"], rows)]
    if len(names) <= 20:
        confusion = zip(names, metrics["confusion"], strict=True)
        cm = [[name, *[str(v) if v else "." for v in row]] for name, row in confusion]
        out.append(("confusion matrix (rows: true, columns: predicted)", ["", *names], cm))
    return out

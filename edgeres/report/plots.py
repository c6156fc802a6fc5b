"""The report's plots as PNG bytes (matplotlib, headless): accuracy vs latency, latency distributions, per-class
change of the primary metric, and a precision-recall curve for tasks whose metrics carry one."""

from __future__ import annotations

import io

import numpy as np


def plots(report: dict) -> dict[str, bytes]:
    """{file name: PNG bytes}, in the order the report shows them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {
        "accuracy_vs_latency.png": _accuracy_vs_latency(plt, report),
        "latency_distributions.png": _latency_distributions(plt, report),
        "per_class_delta.png": _per_class_delta(plt, report),
    }
    if all(r["metrics"].get("pr_curve50") for r in report["rows"]):
        out["precision_recall.png"] = _precision_recall(plt, report)
    plt.close("all")
    return out


def _accuracy_vs_latency(plt, report: dict) -> bytes:
    key, label = report["metric"]["key"], report["metric"]["label"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in report["rows"]:
        if r[key] is None:
            continue
        p50, p90 = r["latency_ms"]["p50"], r["latency_ms"]["p90"]
        ax.errorbar(p50, r[key], xerr=[[p50 - min(r["samples_ms"])], [p90 - p50]], fmt="o", capsize=3, label=r["name"])
    ax.set_xlabel("end-to-end latency p50 (ms), bars: min to p90")
    ax.set_ylabel(label + (" (%)" if report["metric"]["unit"] == "percent" else ""))
    ax.set_title("accuracy vs latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def _latency_distributions(plt, report: dict) -> bytes:
    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.5 * len(rows)))
    ax.boxplot([r["samples_ms"] for r in rows], vert=False, showfliers=True, flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(rows) + 1), [r["name"] for r in rows], fontsize=7)
    ax.set_xlabel("end-to-end latency per iteration (ms)")
    ax.set_title("latency distributions")
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def _per_class_delta(plt, report: dict) -> bytes:
    """One bar group per class: each engine's change of the class's primary metric vs the reference (points);
    a class the metric is undefined for (no ground truth) gets no bar."""
    classes = report["class_names"]
    label = report["metric"]["label"]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.35 * len(classes)), 3.6))
    engines = report["rows"][1:]
    width = 0.8 / max(len(engines), 1)
    x = np.arange(len(classes))
    for i, r in enumerate(engines):
        values = [r["per_class_delta"].get(c) for c in classes]
        ax.bar(x + i * width, [np.nan if v is None else v for v in values], width, label=r["name"])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x + width * (len(engines) - 1) / 2, classes, fontsize=7)
    ax.set_ylabel(f"{label} of the class: change (points)")
    ax.set_title("per-class change vs the torch FP32 reference")
    ax.legend(fontsize=7)
    return _png(fig)


def _precision_recall(plt, report: dict) -> bytes:
    """Interpolated precision at each recall point (IoU 0.5, mean over the classes), one curve per row."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in report["rows"]:
        curve = r["metrics"]["pr_curve50"]
        ax.plot(curve["recall"], curve["precision"], label=r["name"], linewidth=1.2)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (IoU 0.5, mean over classes)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("precision-recall at IoU 0.5 (the area under each curve is its mAP@0.5)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()

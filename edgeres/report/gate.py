"""The report's regression gate: this report against a baseline report.json, row by row (matched by engine
name), on the task's primary metric (in its points) and on p50 latency."""

from __future__ import annotations

import json
from pathlib import Path

from edgeres.errors import EdgeresError

DEFAULT_MAX_DROP = 0.5  # points of the primary metric: 0.5 % top-1, or 0.005 mAP@0.5


def resolve_max_drop(task, max_drop: float | None, max_top1_drop: float | None) -> float:
    """The accepted drop in points of ``task``'s primary metric: ``--max-drop``, or ``--max-top1-drop`` (its
    classifier spelling, kept for existing CI jobs), or the default.

    Raises:
        EdgeresError: both given, a negative value, or ``--max-top1-drop`` for a task whose metric is not top-1.
    """
    if max_drop is not None and max_top1_drop is not None:
        raise EdgeresError("give --max-drop or --max-top1-drop (its older, classifier-only name), not both")
    if max_top1_drop is not None and task.metric.key != "top1":
        example = "" if task.metric.percent else f" (--max-drop 0.5 accepts {task.metric.label} 0.005 lower)"
        raise EdgeresError(
            f"--max-top1-drop gates top-1 and these are {task.title} engines; give --max-drop in "
            f"points of {task.metric.label}{example}"
        )
    value = max_drop if max_drop is not None else max_top1_drop
    value = DEFAULT_MAX_DROP if value is None else float(value)
    if value < 0:
        raise EdgeresError(f"--max-drop must be 0 or more points of {task.metric.label}, got {value}")
    return value


def load_baseline(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise EdgeresError(f"cannot read baseline report {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise EdgeresError(f"{path} is not an edgeres report.json")
    return data


def check_baseline(baseline: dict, task, path) -> None:
    """A baseline of another task (or without the primary metric in its rows) cannot gate this report."""
    other = baseline.get("task", "classify")  # reports before schema 2 were all classifiers
    if other != task.name:
        raise EdgeresError(f"baseline {path} is a report of {other} engines; these are {task.name} engines")
    missing = [r.get("name", "?") for r in baseline["rows"] if not isinstance(r, dict) or task.metric.key not in r]
    if missing:
        raise EdgeresError(
            f"baseline {path}: row '{missing[0]}' has no '{task.metric.key}' ({task.metric.label}); "
            "is it an edgeres report.json?"
        )


def compare_to_baseline(report: dict, baseline: dict, max_drop: float, max_latency_increase: float) -> list[str]:
    """Regressions of this report against a baseline report, matched by row name.

    Args:
        max_drop: accepted loss of the task's primary metric, in its points (see ``Metric.points``).
        max_latency_increase: accepted relative rise of the end-to-end p50 latency (0.25: 25 %).

    Returns:
        One line per regression, naming the row, both values and the limit.
    """
    from edgeres.tasks import get_task

    metric = get_task(report["task"]).metric
    old = {r["name"]: r for r in baseline.get("rows", [])}
    found = []
    for row in report["rows"]:
        prev = old.get(row["name"])
        if prev is None:
            continue
        now, before = row.get(metric.key), prev.get(metric.key)
        if now is not None and before is not None:  # None: undefined (e.g. mAP with no ground-truth box)
            drop = metric.points(before) - metric.points(now)
            if drop > max_drop:
                found.append(
                    f"{row['name']}: {metric.label} {metric.fmt(now)} vs {metric.fmt(before)} "
                    f"(-{drop:.2f} points, limit {max_drop})"
                )
        p50, old_p50 = row["latency_ms"]["p50"], prev["latency_ms"]["p50"]
        if old_p50 > 0 and (p50 - old_p50) / old_p50 > max_latency_increase:
            found.append(
                f"{row['name']}: p50 {p50:.2f} ms vs {old_p50:.2f} ms (+{100 * (p50 / old_p50 - 1):.0f}%, "
                f"limit {100 * max_latency_increase:.0f}%)"
            )
    return found

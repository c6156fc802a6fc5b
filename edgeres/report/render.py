"""The report for people (report.md with PNG plots, a self-contained report.html) and for programs
(report.json), written atomically into one folder."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from edgeres.errors import EdgeresError

FIXED_BEFORE = ("engine", "backend", "device", "precision", "quantization")
FIXED_AFTER = ("p50 ms", "p90 ms", "p99 ms", "img/s", "memory +MiB", "size MiB", "build s")
PLOT_TITLES = {
    "accuracy_vs_latency.png": "accuracy vs latency",
    "latency_distributions.png": "latency distributions",
    "per_class_delta.png": "per-class change",
    "precision_recall.png": "precision-recall",
}


def _has_agreement(report: dict) -> bool:
    """Top-1 agreement exists for tasks with one predicted class per image; other tasks' tables leave it out."""
    return any(r["agreement"] is not None for r in report["rows"])


def columns(report: dict) -> list[str]:
    """The table's header: fixed columns around the task's own (``Task.report_columns``) and the change vs FP32."""
    agree = ["agree %"] if _has_agreement(report) else []
    return [
        *FIXED_BEFORE,
        *(label for _, label in report["columns"]),
        f"Δ {report['metric']['label']}",
        *agree,
        *FIXED_AFTER,
    ]


def cells(report: dict, r: dict) -> list[str]:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    metric_fmt = ".2f" if report["metric"]["unit"] == "percent" else ".4f"
    key = report["metric"]["key"]
    return [
        r["name"],
        r["backend"],
        r["device"],
        r["precision"],
        r["quantization"],
        *(num(r[k], metric_fmt) for k, _ in report["columns"]),
        num(r[f"delta_{key}"], "+.2f"),
        *([num(r["agreement"], ".1f")] if _has_agreement(report) else []),
        f"{r['latency_ms']['p50']:.2f}",
        f"{r['latency_ms']['p90']:.2f}",
        f"{r['latency_ms']['p99']:.2f}",
        f"{r['throughput_ips']:.1f}",
        f"{r['rss_increase_mb']:.0f}",
        num(r["engine_size_mb"], ".1f"),
        num(r["build_seconds"], ".1f"),
    ]


def _header_lines(report: dict) -> list[str]:
    env = report["environment"]
    s = env["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    return [
        f"Machine: {env['cpu']} ({env['cpu_isa']}, {env['cores']} cores). Date: {report['created']}.",
        f"Versions: {versions}.",
        f"Bench: batch {s['batches'][0]}, threads {s['threads'] or 'default'}, {s['duration']} s measured after "
        f"{s['warmup']} s warm-up, {env['frames']}.",
        f"Data: {report['data']} ({report['images']} images, evaluated with the same code as `edgeres eval`); "
        f"reference: torch FP32 {report['reference']}.",
    ]


def _note(report: dict) -> str:
    label = report["metric"]["label"]
    unit = "percentage points" if report["metric"]["unit"] == "percent" else f"points (hundredths of {label})"
    agreement = "; agreement: images whose predicted class is the reference's" if _has_agreement(report) else ""
    return (
        f"Δ {label} is against the torch FP32 reference, in {unit}{agreement}. Latency is end to end "
        "(pre-process + inference + post-process with the task's decoder) on real 640x480 frames. Memory: "
        "resident memory the process gained while loading and running that engine (the process peak is in "
        "report.json)."
    )


def render_markdown(report: dict, plots: list[str], regressions: list[str]) -> str:
    head = columns(report)
    lines = ["# edgeres report", ""] + [f"- {h}" for h in _header_lines(report)] + [""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells(report, r)) + " |" for r in report["rows"]]
    lines += ["", _note(report), ""]
    if regressions:
        lines += ["## Regressions vs the baseline", ""] + [f"- {r}" for r in regressions] + [""]
    for name in plots:
        lines += [f"![{PLOT_TITLES.get(name, name)}]({name})", ""]
    return "\n".join(lines)


def render_html(report: dict, plots: dict[str, bytes], regressions: list[str]) -> str:
    head = "".join(f"<li>{html.escape(h)}</li>" for h in _header_lines(report))
    th = "".join(f"<th>{html.escape(c)}</th>" for c in columns(report))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells(report, r)) + "</tr>" for r in report["rows"]
    )
    imgs = "".join(
        f'<figure><img alt="{html.escape(PLOT_TITLES.get(name, name))}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"></figure>'
        for name, png in plots.items()
    )
    regs = (
        (
            "<h2>Regressions vs the baseline</h2><ul>"
            + "".join(f"<li>{html.escape(r)}</li>" for r in regressions)
            + "</ul>"
        )
        if regressions
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgeres report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;font-size:13px}}
th,td{{border:1px solid #ccc;padding:3px 6px;text-align:right}}td:nth-child(-n+5),th:nth-child(-n+5){{text-align:left}}
th{{background:#f3f3f3}}figure{{display:inline-block;margin:1em}}img{{max-width:640px}}</style></head>
<body><h1>edgeres report</h1><ul>{head}</ul><table><tr>{th}</tr>{body}</table>
<p>{html.escape(_note(report))}</p>
{regs}{imgs}</body></html>
"""


def write_report(report: dict, out: Path, regressions: list[str] | None = None, force: bool = False) -> Path:
    """Write report.json, report.md (+ PNGs) and a self-contained report.html into ``out``, atomically each.

    Args:
        regressions: lines for the "regressions" section [default: the report's own, from ``build_report``].
    """
    from edgeres.fileio import atomic_path, write_json_atomic, write_text_atomic
    from edgeres.report.plots import plots as make_plots

    out = Path(out)
    if (out / "report.json").exists() and not force:
        raise EdgeresError(f"{out} already holds a report; pass --force to overwrite it")
    regressions = report.get("regressions", []) if regressions is None else regressions
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(report)
    for name, png in plots.items():
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(png)
    write_text_atomic(out / "report.md", render_markdown(report, list(plots), regressions))
    write_text_atomic(out / "report.html", render_html(report, plots, regressions))
    write_json_atomic(out / "report.json", report | {"regressions": regressions})
    return out

"""Accuracy/latency comparison reports: numbers only from ``evaluate`` and ``bench``.

Every engine (and the torch FP32 reference) is evaluated on the same data with the same code as
``edgeres eval`` and timed with the same code as ``edgeres bench``; the report is written as
``report.json`` (for CI gates), ``report.md`` and a self-contained ``report.html`` with plots.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeres.errors import EdgeresError

REPORT_VERSION = 1


@dataclass
class ReportConfig:
    engines: list[Path]
    data: Path
    out: Path
    model: Path | None = None  # torch FP32 reference [default: the engines' source checkpoint]
    batch: int = 1
    duration: float = 5.0
    warmup: float = 1.0
    threads: int | None = None
    baseline: Path | None = None
    max_top1_drop: float = 0.5  # regression gate: points of top-1 lost vs the baseline
    max_latency_increase: float = 0.25  # regression gate: relative p50 increase vs the baseline
    force: bool = False
    extra_rows: list[dict] = field(default_factory=list)


def _check_engines(engines: list[Path]) -> list[dict]:
    from edgeres.engine import read_manifest, resolve

    manifests = []
    for e in engines:
        _, manifest_file = resolve(e)
        manifests.append(read_manifest(manifest_file))
    tasks = {m["task"] for m in manifests}
    if len(tasks) > 1:
        raise EdgeresError(f"engines for different tasks in one report: {', '.join(sorted(tasks))}")
    if tasks == {"detect"}:
        raise EdgeresError("report compares classifiers (top-1, agreement); for detect engines compare mAP with "
                           "'edgeres eval --engine E --data DIR' and latency with 'edgeres bench --engine E ...'")
    classes = {tuple(m["class_names"]) for m in manifests}
    if len(classes) > 1:
        a, b = list(classes)[:2]
        raise EdgeresError(f"engines with different class lists in one report: {list(a)[:5]} vs {list(b)[:5]}")
    return manifests


def build_report(cfg: ReportConfig, progress: bool = True) -> dict:
    """Evaluate and time every engine and the reference; return the report dict (not yet written)."""
    from edgeres.bench import BenchConfig, bench_checkpoint, bench_engine, bench_environment
    from edgeres.evaluate import evaluate_checkpoint, evaluate_engine

    if not cfg.engines:
        raise EdgeresError("no engines given: pass --engines ENGINE [ENGINE ...]")
    manifests = _check_engines(cfg.engines)
    reference = cfg.model or Path(manifests[0]["source"]["checkpoint"])
    if not Path(reference).is_file():
        raise EdgeresError(f"the FP32 reference checkpoint {reference} is missing; pass --model CKPT")
    bench_cfg = BenchConfig(batches=[cfg.batch], threads=cfg.threads, duration=cfg.duration, warmup=cfg.warmup)
    ref_metrics = evaluate_checkpoint(reference, cfg.data)
    ref_pred = np.asarray(ref_metrics["predictions"])
    rows = [_row("torch FP32 (reference)", "torch", "fp32", "-", ref_metrics, bench_checkpoint(reference, bench_cfg),
                 ref_pred, ref_metrics, None, None)]
    for target, manifest in zip(cfg.engines, manifests, strict=True):
        metrics = evaluate_engine(target, cfg.data, threads=cfg.threads)
        timing = bench_engine(target, bench_cfg)
        rows.append(_row(timing["name"], manifest["backend"]["name"], manifest["precision"], _quant_label(manifest),
                         metrics, timing, ref_pred, ref_metrics, manifest, target))
    return {
        "version": REPORT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": str(Path(cfg.data).resolve()),
        "task": manifests[0]["task"],
        "images": ref_metrics["images"],
        "class_names": manifests[0]["class_names"],
        "reference": str(reference),
        "environment": bench_environment(bench_cfg),
        "rows": rows,
    }


def _quant_label(manifest: dict) -> str:
    calib = manifest.get("calibration")
    if not calib:
        return "-"
    label = "QAT" if calib.get("source") == "qat" else calib.get("method", "?")
    if calib.get("method") == "percentile" and calib.get("source") != "qat":
        label += f" {calib.get('percentile')}"
    mixed = manifest.get("mixed")
    if mixed:
        kept = [n.strip("/").replace("/Conv", "").replace("/Gemm", "") for n in mixed["float_layers"]]
        label += f"; float: {', '.join(kept) or 'none'}"
    return label


def _row(name, backend, precision, quant, metrics, timing, ref_pred, ref_metrics, manifest, target) -> dict:
    result = timing["results"][0]
    lat = result["latency_ms"]
    pred = np.asarray(metrics["predictions"])
    per_class_delta = {c: (v["top1"] or 0.0) - (ref_metrics["per_class"][c]["top1"] or 0.0)
                       for c, v in metrics["per_class"].items()}
    device = "cpu"
    if manifest is not None:
        d = manifest.get("device", {})
        device = d.get("gpu") or d.get("cpu_isa") or "cpu"
    else:
        from edgeres.sysinfo import cpu_facts

        device = cpu_facts()["isa"]
    return {
        "name": name, "engine": str(target) if target is not None else None, "backend": backend, "device": device,
        "precision": precision, "quantization": quant,
        "top1": metrics["top1"], "top5": metrics["top5"], "delta_top1": metrics["top1"] - ref_metrics["top1"],
        "agreement": 100.0 * float((pred == ref_pred).mean()),
        "latency_ms": {k: lat["end_to_end"][k] for k in ("p50", "p90", "p99", "mean", "std")},
        "stage_p50_ms": {k: v["p50"] for k, v in lat.items()},
        "samples_ms": result["samples_ms"],
        "throughput_ips": result["throughput_ips"], "batch": result["batch"],
        "peak_rss_mb": timing["peak_rss_mb"], "rss_increase_mb": timing["rss_increase_mb"],
        "engine_size_mb": timing["engine_size_mb"],
        "build_seconds": manifest.get("build_seconds") if manifest else None,
        "per_class_top1": {c: v["top1"] for c, v in metrics["per_class"].items()},
        "per_class_delta": per_class_delta,
    }


def compare_to_baseline(report: dict, baseline: dict, max_top1_drop: float, max_latency_increase: float) -> list[str]:
    """Regressions of this report against a baseline report, matched by row name."""
    old = {r["name"]: r for r in baseline.get("rows", [])}
    found = []
    for row in report["rows"]:
        prev = old.get(row["name"])
        if prev is None:
            continue
        drop = prev["top1"] - row["top1"]
        if drop > max_top1_drop:
            found.append(f"{row['name']}: top-1 {row['top1']:.2f}% vs {prev['top1']:.2f}% (-{drop:.2f} points, "
                         f"limit {max_top1_drop})")
        p50, old_p50 = row["latency_ms"]["p50"], prev["latency_ms"]["p50"]
        if old_p50 > 0 and (p50 - old_p50) / old_p50 > max_latency_increase:
            found.append(f"{row['name']}: p50 {p50:.2f} ms vs {old_p50:.2f} ms (+{100 * (p50 / old_p50 - 1):.0f}%, "
                         f"limit {100 * max_latency_increase:.0f}%)")
    return found


# ---------------------------------------------------------------- writing


def _plots(report: dict) -> dict[str, bytes]:
    """PNG bytes of: accuracy vs latency, latency distributions, per-class accuracy deltas."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    names = [r["name"] for r in rows]
    out = {}

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in rows:
        p50, p90 = r["latency_ms"]["p50"], r["latency_ms"]["p90"]
        ax.errorbar(p50, r["top1"], xerr=[[p50 - min(r["samples_ms"])], [p90 - p50]], fmt="o", capsize=3,
                    label=r["name"])
    ax.set_xlabel("end-to-end latency p50 (ms), bars: min to p90")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("accuracy vs latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out["accuracy_vs_latency.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.5 * len(rows)))
    ax.boxplot([r["samples_ms"] for r in rows], vert=False, showfliers=True, flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(rows) + 1), names, fontsize=7)
    ax.set_xlabel("end-to-end latency per iteration (ms)")
    ax.set_title("latency distributions")
    ax.grid(alpha=0.3, axis="x")
    out["latency_distributions.png"] = _png(fig)

    classes = report["class_names"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    engines = rows[1:]
    width = 0.8 / max(len(engines), 1)
    x = np.arange(len(classes))
    for i, r in enumerate(engines):
        ax.bar(x + i * width, [r["per_class_delta"][c] for c in classes], width, label=r["name"])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x + width * (len(engines) - 1) / 2, classes, fontsize=7)
    ax.set_ylabel("top-1 change vs FP32 (points)")
    ax.set_title("per-class accuracy change vs the torch FP32 reference")
    ax.legend(fontsize=7)
    out["per_class_delta.png"] = _png(fig)
    plt.close("all")
    return out


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


COLUMNS = ("engine", "backend", "device", "precision", "quantization", "top-1 %", "top-5 %", "Δ top-1", "agree %",
           "p50 ms", "p90 ms", "p99 ms", "img/s", "memory +MiB", "size MiB", "build s")


def _cells(r: dict) -> list[str]:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    return [r["name"], r["backend"], r["device"], r["precision"], r["quantization"], f"{r['top1']:.2f}",
            f"{r['top5']:.2f}", f"{r['delta_top1']:+.2f}", f"{r['agreement']:.1f}", f"{r['latency_ms']['p50']:.2f}",
            f"{r['latency_ms']['p90']:.2f}", f"{r['latency_ms']['p99']:.2f}", f"{r['throughput_ips']:.1f}",
            f"{r['rss_increase_mb']:.0f}", num(r["engine_size_mb"], ".1f"), num(r["build_seconds"], ".1f")]


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


def render_markdown(report: dict, regressions: list[str]) -> str:
    lines = ["# edgeres report", ""] + [f"- {h}" for h in _header_lines(report)] + [""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in report["rows"]]
    lines += ["", "Δ top-1 and agreement are against the torch FP32 reference. Latency is end to end "
              "(pre-process + inference + post-process) on real 640x480 frames. Memory: resident memory the "
              "process gained while loading and running that engine (the process peak is in report.json).", ""]
    if regressions:
        lines += ["## Regressions vs the baseline", ""] + [f"- {r}" for r in regressions] + [""]
    lines += ["![accuracy vs latency](accuracy_vs_latency.png)", "",
              "![latency distributions](latency_distributions.png)", "", "![per-class change](per_class_delta.png)", ""]
    return "\n".join(lines)


def render_html(report: dict, plots: dict[str, bytes], regressions: list[str]) -> str:
    head = "".join(f"<li>{html.escape(h)}</li>" for h in _header_lines(report))
    th = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r)) + "</tr>" for r in report["rows"])
    imgs = "".join(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
                   f'{base64.b64encode(png).decode()}"></figure>' for name, png in plots.items())
    regs = ("<h2>Regressions vs the baseline</h2><ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in regressions)
            + "</ul>") if regressions else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgeres report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;font-size:13px}}
th,td{{border:1px solid #ccc;padding:3px 6px;text-align:right}}td:nth-child(-n+5),th:nth-child(-n+5){{text-align:left}}
th{{background:#f3f3f3}}figure{{display:inline-block;margin:1em}}img{{max-width:640px}}</style></head>
<body><h1>edgeres report</h1><ul>{head}</ul><table><tr>{th}</tr>{body}</table>
<p>Δ top-1 and agreement are against the torch FP32 reference; latency is end to end on real 640x480 frames.</p>
{regs}{imgs}</body></html>
"""


def write_report(report: dict, out: Path, regressions: list[str], force: bool = False) -> Path:
    """Write report.json, report.md (+ PNGs) and a self-contained report.html into ``out``, atomically each."""
    from edgeres.fileio import atomic_path, write_json_atomic, write_text_atomic

    out = Path(out)
    if (out / "report.json").exists() and not force:
        raise EdgeresError(f"{out} already holds a report; pass --force to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(report)
    for name, png in plots.items():
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(png)
    write_text_atomic(out / "report.md", render_markdown(report, regressions))
    write_text_atomic(out / "report.html", render_html(report, plots, regressions))
    write_json_atomic(out / "report.json", report | {"regressions": regressions})
    return out


def load_baseline(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise EdgeresError(f"cannot read baseline report {path}: {exc}") from None
    if not isinstance(data, dict) or "rows" not in data:
        raise EdgeresError(f"{path} is not an edgeres report.json")
    return data

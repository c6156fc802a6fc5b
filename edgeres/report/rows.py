"""The report's numbers: every engine and the torch FP32 reference evaluated as ``edgeres eval`` and timed as
``edgeres bench`` does, one row each, in the task's own metrics."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeres.errors import EdgeresError

REPORT_SCHEMA = "edgeres.report/2"  # 2: any task; the primary metric named in "metric"; eval's metrics in each row
REPORT_VERSION = 2
# Per-image lists in eval's metrics: left out of report.json rows (they grow with the data, not the engines).
PER_IMAGE_KEYS = ("predictions", "detections_per_image")


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
    max_drop: float | None = None  # regression gate: points of the primary metric lost vs the baseline [0.5]
    max_top1_drop: float | None = None  # the same for classifiers, under its older name
    max_latency_increase: float = 0.25  # regression gate: relative p50 increase vs the baseline
    force: bool = False
    extra_rows: list[dict] = field(default_factory=list)


def check_engines(engines: list[Path]) -> list[dict]:
    """The engines' manifests; engines of different tasks or class lists in one report are refused."""
    from edgeres.engine import resolve
    from edgeres.manifest import read_manifest

    manifests = []
    for e in engines:
        _, manifest_file = resolve(e)
        manifests.append(read_manifest(manifest_file))
    tasks = {m["task"] for m in manifests}
    if len(tasks) > 1:
        raise EdgeresError(f"engines for different tasks in one report: {', '.join(sorted(tasks))}")
    classes = {tuple(m["class_names"]) for m in manifests}
    if len(classes) > 1:
        a, b = list(classes)[:2]
        raise EdgeresError(f"engines with different class lists in one report: {list(a)[:5]} vs {list(b)[:5]}")
    return manifests


def build_report(cfg: ReportConfig, progress: bool = True) -> dict:
    """Evaluate and time every engine and the reference; return the report dict (not yet written), with the
    regressions against ``cfg.baseline`` when one is given.

    Raises:
        EdgeresError: no engines, engines that do not belong in one report, a missing reference, gate options
            that do not fit the task or a baseline of another task (all before anything is evaluated).
    """
    from edgeres.bench import BenchConfig, bench_checkpoint, bench_engine, bench_environment
    from edgeres.evaluate import evaluate_checkpoint, evaluate_engine
    from edgeres.report.gate import check_baseline, compare_to_baseline, load_baseline, resolve_max_drop
    from edgeres.tasks import get_task

    if not cfg.engines:
        raise EdgeresError("no engines given: pass --engines ENGINE [ENGINE ...]")
    manifests = check_engines(cfg.engines)
    task = get_task(manifests[0]["task"])
    max_drop = resolve_max_drop(task, cfg.max_drop, cfg.max_top1_drop)
    baseline = load_baseline(cfg.baseline) if cfg.baseline is not None else None
    if baseline is not None:
        check_baseline(baseline, task, cfg.baseline)
    reference = cfg.model or Path(manifests[0]["source"]["checkpoint"])
    if not Path(reference).is_file():
        raise EdgeresError(f"the FP32 reference checkpoint {reference} is missing; pass --model CKPT")
    bench_cfg = BenchConfig(batches=[cfg.batch], threads=cfg.threads, duration=cfg.duration, warmup=cfg.warmup)
    ref_metrics = evaluate_checkpoint(reference, cfg.data)
    rows = [
        _row(
            task,
            "torch FP32 (reference)",
            "torch",
            "fp32",
            "-",
            ref_metrics,
            bench_checkpoint(reference, bench_cfg),
            ref_metrics,
            None,
            None,
        )
    ]
    for target, manifest in zip(cfg.engines, manifests, strict=True):
        metrics = evaluate_engine(target, cfg.data, threads=cfg.threads)
        timing = bench_engine(target, bench_cfg)
        rows.append(
            _row(
                task,
                timing["name"],
                manifest["backend"]["name"],
                manifest["precision"],
                quant_label(manifest),
                metrics,
                timing,
                ref_metrics,
                manifest,
                target,
            )
        )
    report = {
        "schema": REPORT_SCHEMA,
        "version": REPORT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": str(Path(cfg.data).resolve()),
        "task": task.name,
        "metric": {
            "key": task.metric.key,
            "label": task.metric.label,
            "unit": "percent" if task.metric.percent else "fraction",
        },
        "columns": [list(c) for c in task.report_columns],
        "images": ref_metrics["images"],
        "class_names": manifests[0]["class_names"],
        "reference": str(reference),
        "environment": bench_environment(bench_cfg),
        "gate": {
            "baseline": str(cfg.baseline) if cfg.baseline is not None else None,
            "max_drop_points": max_drop,
            "max_latency_increase": cfg.max_latency_increase,
        },
        "rows": rows,
    }
    report["regressions"] = (
        compare_to_baseline(report, baseline, max_drop, cfg.max_latency_increase) if baseline is not None else []
    )
    return report


def quant_label(manifest: dict) -> str:
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


def _delta(task, value, reference) -> float | None:
    """``value - reference`` in points of the task's metric; None where either is undefined."""
    if value is None or reference is None:
        return None
    return task.metric.points(value) - task.metric.points(reference)


def _agreement(metrics: dict, ref_metrics: dict) -> float | None:
    """Share of images (%) whose predicted class is the reference's, for tasks that report one class per image."""
    if "predictions" not in metrics or "predictions" not in ref_metrics:
        return None
    return 100.0 * float((np.asarray(metrics["predictions"]) == np.asarray(ref_metrics["predictions"])).mean())


def _device(manifest: dict | None) -> str:
    if manifest is not None:
        d = manifest.get("device", {})
        return d.get("gpu") or d.get("cpu_isa") or "cpu"
    from edgeres.device.cpu import cpu_facts

    return cpu_facts()["isa"]


def _row(task, name, backend, precision, quant, metrics, timing, ref_metrics, manifest, target) -> dict:
    result = timing["results"][0]
    lat = result["latency_ms"]
    key = task.metric.key
    per_class, ref_per_class = task.per_class(metrics), task.per_class(ref_metrics)
    return {
        "name": name,
        "engine": str(target) if target is not None else None,
        "backend": backend,
        "device": _device(manifest),
        "precision": precision,
        "quantization": quant,
        **{k: metrics[k] for k, _ in task.report_columns},
        f"delta_{key}": _delta(task, metrics[key], ref_metrics[key]),  # points of the primary metric vs FP32
        "agreement": _agreement(metrics, ref_metrics),
        "latency_ms": {k: lat["end_to_end"][k] for k in ("p50", "p90", "p99", "mean", "std")},
        "stage_p50_ms": {k: v["p50"] for k, v in lat.items()},
        "samples_ms": result["samples_ms"],
        "throughput_ips": result["throughput_ips"],
        "batch": result["batch"],
        "peak_rss_mb": timing["peak_rss_mb"],
        "rss_increase_mb": timing["rss_increase_mb"],
        "engine_size_mb": timing["engine_size_mb"],
        "build_seconds": manifest.get("build_seconds") if manifest else None,
        "per_class": per_class,
        "per_class_delta": {c: _delta(task, v, ref_per_class.get(c)) for c, v in per_class.items()},
        "metrics": {k: v for k, v in metrics.items() if k not in PER_IMAGE_KEYS},  # as `edgeres eval --json`
    }

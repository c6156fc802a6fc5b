"""The on-device self-test: train (or take) a digits model, build TensorRT engines, check them against the
ONNX Runtime CPU engine, time them, and print one table a user can paste into a bug report.

Runs only where TensorRT and a CUDA device are present (``unavailable_reason`` says why not). The
comparison, timing and table code is backend-independent and tested on the CPU with ONNX Runtime runners.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.tasks.classify.outputs import softmax

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Tolerance:
    """What an engine must meet against the FP32 CPU reference on the same images."""

    min_agreement: float  # fraction of images with the same top-1 class
    max_mean_prob_diff: float  # mean over images of max over classes |p - p_ref|


# FP32 engines may use TF32 on Ampere+ (TensorRT's default); FP16 and INT8 round more.
TOLERANCES = {
    "fp32": Tolerance(0.995, 0.005),
    "fp16": Tolerance(0.99, 0.01),
    "int8": Tolerance(0.97, 0.05),
    "mixed": Tolerance(0.97, 0.05),
}


@dataclass
class SelftestConfig:
    """What ``edgeres selftest`` runs."""

    out: Path = Path("selftest")
    model: Path | None = None
    precisions: tuple[str, ...] = PRECISIONS
    duration: float = 3.0
    cuda_graph: bool = False
    images: int = 500
    epochs: int = 2
    extra: dict = field(default_factory=dict)


def parse_precisions(text: str) -> tuple[str, ...]:
    """'fp32,int8' -> ('fp32', 'int8'); unknown names are an error listing the accepted ones."""
    items = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in items if p not in PRECISIONS]
    if not items or bad:
        raise EdgeresError(f"--precisions '{text}': accepted are {', '.join(PRECISIONS)} (comma-separated)")
    return items


def unavailable_reason() -> str | None:
    """Why the self-test cannot run here (no TensorRT, unsupported version, no CUDA device), or None."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed"
    try:
        import tensorrt

        from edgeres.backends.trt.versions import features

        features(tensorrt.__version__)
    except EdgeresError as exc:
        return str(exc)
    except Exception as exc:  # a broken install raises anything at import
        return f"TensorRT does not import ({type(exc).__name__}: {exc})"
    from edgeres.backends.trt.buffers import cuda_status

    status = cuda_status()
    if not status["device"]:
        return f"no usable CUDA device ({status['error']})"
    return None


def compare(reference: np.ndarray, logits: np.ndarray, labels: np.ndarray, precision: str) -> dict:
    """An engine's logits against the reference's on the same images, judged with ``TOLERANCES[precision]``.

    Returns:
        ``{"images", "top1", "agreement", "mean_prob_diff", "max_prob_diff", "max_logit_diff", "passed",
        "tolerance"}``; accuracies and agreement are percentages.
    """
    reference, logits = np.asarray(reference, np.float64), np.asarray(logits, np.float64)
    if reference.shape != logits.shape:
        raise EdgeresError(f"engine logits {logits.shape} do not match the reference's {reference.shape}")
    tol = TOLERANCES[precision]
    dp = np.abs(softmax(logits) - softmax(reference)).max(axis=1)
    agreement = float((logits.argmax(1) == reference.argmax(1)).mean())
    return {
        "images": len(labels),
        "top1": 100.0 * float((logits.argmax(1) == labels).mean()),
        "agreement": 100.0 * agreement,
        "mean_prob_diff": float(dp.mean()),
        "max_prob_diff": float(dp.max()),
        "max_logit_diff": float(np.abs(logits - reference).max()),
        "passed": agreement >= tol.min_agreement and float(dp.mean()) <= tol.max_mean_prob_diff,
        "tolerance": {"min_agreement": 100.0 * tol.min_agreement, "max_mean_prob_diff": tol.max_mean_prob_diff},
    }


def runner_logits(runner, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """(N, classes) logits of an active runner over preprocessed NCHW images."""
    out = [next(iter(runner.infer(images[i : i + batch]).values())) for i in range(0, len(images), batch)]
    return np.concatenate(out).astype(np.float32)


def time_runner(runner, x: np.ndarray, duration: float, warmup: float = 0.5) -> dict:
    """Time ``runner.infer(x)``: host latency (end to end, as the caller sees it) and, when the runner records
    CUDA events, GPU compute time apart from the copies (as trtexec reports them)."""
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        runner.infer(x)
    host, gpu = [], []
    end = time.perf_counter() + duration
    while time.perf_counter() < end or len(host) < 10:
        runner.infer(x)
        host.append(runner.last_inference_time * 1e3)
        device = getattr(runner, "last_device_times", None)
        if device:
            gpu.append(device["compute_ms"])
    return {
        "batch": len(x),
        "iterations": len(host),
        "host_p50_ms": float(np.median(host)),
        "host_p90_ms": float(np.percentile(host, 90)),
        "gpu_p50_ms": float(np.median(gpu)) if gpu else None,
        "images_per_s": len(x) * 1e3 / float(np.mean(host)),
    }


def environment() -> dict:
    """The versions, device and Jetson settings every number in the table depends on."""
    from edgeres import __version__
    from edgeres.backends.trt.buffers import cuda_status
    from edgeres.device.doctor import jetson_bench_facts
    from edgeres.device.gpu import gpu_facts
    from edgeres.device.packages import package_versions

    pkgs = package_versions()
    gpus = gpu_facts()["gpus"]
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "edgeres": __version__,
        "python": platform.python_version(),
        "tensorrt": pkgs.get("tensorrt"),
        "onnxruntime": pkgs.get("onnxruntime"),
        "torch": pkgs.get("torch"),
        "cuda": cuda_status(),
        "driver": gpus[0]["driver_version"] if gpus else None,
        "jetson": jetson_bench_facts(),
    }


def summary_table(report: dict) -> str:
    """The report as plain text: environment lines, then one Markdown table row per engine."""
    env = report["environment"]
    cuda = env.get("cuda") or {}
    dev = cuda.get("device") or {}
    jetson = env.get("jetson")
    lines = [
        f"edgeres selftest {env.get('date', '')}",
        f"edgeres {env.get('edgeres')}, Python {env.get('python')}, TensorRT {env.get('tensorrt')}, "
        f"ONNX Runtime {env.get('onnxruntime')}, torch {env.get('torch')}",
        f"GPU {dev.get('name', 'none')} (sm {dev.get('compute_capability', '?')}) via {cuda.get('binding')}, "
        f"driver {env.get('driver') or 'unknown'}",
    ]
    if jetson:
        power = jetson.get("power_mode") or {}
        locked = {True: "yes", False: "no", None: "unknown"}[jetson.get("clocks_locked")]
        lines.append(
            f"Jetson {jetson.get('model')}, L4T {jetson.get('l4t')}, power mode {power.get('name')} "
            f"(id {power.get('id')}), clocks locked: {locked}"
        )
    lines.append(report.get("model_line", ""))
    lines.append(tuning_line(report))
    head = [
        "engine",
        "build s",
        "MiB",
        "top-1 %",
        "agree %",
        "mean |dp|",
        "max |dlogit|",
        "check",
        "b1 host p50 ms",
        "b1 GPU p50 ms",
        f"b{report.get('throughput_batch', 32)} img/s",
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["rows"]:
        c, t1, tn = row.get("compare") or {}, row.get("latency") or {}, row.get("throughput") or {}
        if row.get("error"):
            cells = [row["name"], "", "", "", "", "", "", "ERROR: " + row["error"][:120], "", "", ""]
        else:
            check = "reference" if row.get("reference") else ("pass" if c.get("passed") else "FAIL")
            cells = [
                row["name"],
                _f(row.get("build_seconds"), 1),
                _f(row.get("size_mib"), 1),
                _f(c.get("top1"), 2),
                _f(c.get("agreement"), 2),
                _f(c.get("mean_prob_diff"), 4),
                _f(c.get("max_logit_diff"), 3),
                check,
                _f(t1.get("host_p50_ms"), 3),
                _f(t1.get("gpu_p50_ms"), 3),
                _f(tn.get("images_per_s"), 0),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"verdict: {'PASS' if report['passed'] else 'FAIL'}")
    return "\n".join(line for line in lines if line)


def tuning_line(report: dict) -> str:
    """Which batch the TensorRT engines were tuned for (their ``--opt-batch``), so the latency and throughput
    columns are read against it; '' when no row says."""
    tuned = sorted({r["tuned_batch"] for r in report["rows"] if r.get("tuned_batch") is not None})
    if not tuned:
        return ""
    batch = report.get("throughput_batch", 32)
    text = f"TensorRT engines tuned for batch {', '.join(map(str, tuned))} (--opt-batch)"
    if batch not in tuned:
        text += f"; the b{batch} column runs the same engines outside their tuned shape"
    return text


def _f(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _engine_row(
    name: str,
    folder: Path,
    images: np.ndarray,
    labels: np.ndarray,
    reference: np.ndarray | None,
    precision: str,
    cfg: SelftestConfig,
    cuda_graph: bool = False,
) -> dict:
    """Open an engine folder, take its logits and timings; compare with the reference when given."""
    from edgeres.backends.trt.runner import TensorRTRunner
    from edgeres.engine import open_engine

    engine = open_engine(folder)
    if cuda_graph:
        engine.runner = TensorRTRunner(
            engine.engine_file, max_batch=engine.runner.max_batch, cuda_graph=True, manifest=engine.manifest
        )
    m = engine.manifest
    row = {
        "name": name,
        "precision": precision,
        "reference": reference is None,
        "build_seconds": m["backend"].get("build_seconds", m.get("build_seconds")),
        "size_mib": m["engine"]["size"] / 2**20,
        "tuned_batch": m["input"].get("opt_batch"),
    }
    with engine:
        logits = runner_logits(engine.runner, images)
        row["latency"] = time_runner(engine.runner, images[:1], cfg.duration)
        row["throughput"] = time_runner(engine.runner, images[:32], cfg.duration)
    row["logits"] = logits
    if reference is not None:
        row["compare"] = compare(reference, logits, labels, precision)
    else:
        row["compare"] = {"top1": 100.0 * float((logits.argmax(1) == labels).mean())}
    return row


def run_selftest(cfg: SelftestConfig) -> dict:
    """Everything ``edgeres selftest`` does; the caller has checked ``unavailable_reason()``.

    Returns:
        ``{"environment", "model_line", "rows", "passed", "throughput_batch"}``; each row holds the engine's
        build time, size, comparison with the ONNX Runtime CPU reference and timings (logits removed).
    """
    from edgeres.build import BuildConfig, build_engine
    from edgeres.data.digits import write_digits
    from edgeres.data.imagefolder import load_eval_split
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.quant.workflow import CalibConfig, run_calibration
    from edgeres.tasks.classify.data import EvalImages

    out = Path(cfg.out)
    digits = out / "digits"
    if not digits.is_dir():
        write_digits(digits, size=32, progress=False)
    model_line = ""
    model = cfg.model
    if model is None:
        from edgeres.train import TrainConfig, train

        start = time.perf_counter()
        summary = train(
            TrainConfig(
                data=digits, out=out / "run", epochs=cfg.epochs, img_size=32, batch_size=128, progress=False, force=True
            )
        )
        model = out / "run" / "best.safetensors"
        model_line = (
            f"model: resnet18 on the bundled MNIST digits, trained here in "
            f"{time.perf_counter() - start:.1f} s, val top-1 {summary['best_top1']:.2f}%"
        )
    ckpt = load_checkpoint(model)
    model_line = model_line or f"model: {model} ({ckpt.config.arch})"
    val = EvalImages(load_eval_split(digits), ckpt.config.preprocess)
    images = np.concatenate(list(val.batches(256)))[: cfg.images]
    labels = val.labels[: cfg.images]

    engines = out / "engines"
    build_engine(
        BuildConfig(model=model, out=engines / "onnxruntime-fp32", backend="onnxruntime", force=True), progress=False
    )
    ref = _engine_row("onnxruntime-fp32 (CPU)", engines / "onnxruntime-fp32", images, labels, None, "fp32", cfg)
    rows = [ref]
    for precision in cfg.precisions:
        name = f"tensorrt-{precision}"
        try:
            calib = None
            if precision == "int8":
                calib = run_calibration(
                    CalibConfig(
                        model=Path(model),
                        data=digits / "train",
                        out=out / "calibration",
                        num_images=512,
                        force=True,
                        progress=False,
                    )
                ).folder
            build_engine(
                BuildConfig(
                    model=model, out=engines / name, precision=precision, backend="tensorrt", calib=calib, force=True
                ),
                progress=False,
            )
            rows.append(
                _engine_row(name, engines / name, images, labels, ref["logits"], precision, cfg, cfg.cuda_graph)
            )
        except EdgeresError as exc:
            rows.append({"name": name, "precision": precision, "error": str(exc)})
    for row in rows:
        row.pop("logits", None)
    passed = all(not r.get("error") and (r["reference"] or r["compare"]["passed"]) for r in rows)
    return {
        "environment": environment(),
        "model_line": model_line + f"; {len(labels)} validation images; reference ONNX Runtime FP32 on the CPU",
        "rows": rows,
        "passed": passed,
        "throughput_batch": 32,
    }

"""Latency and throughput of an engine (or the torch reference) on real camera-sized frames.

Each iteration times the three stages users pay for: pre-process (resize + normalize of 640x480
frames), inference, post-process (the task's one decoder: softmax + top-k for a classifier, box decoding +
NMS for a detector). Warm-up and measurement are time-based.
"""

from __future__ import annotations

import datetime as dt
import resource
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeres.config import PreprocessConfig
from edgeres.errors import EdgeresError
from edgeres.processing import preprocess

STAGES = ("preprocess", "inference", "postprocess", "end_to_end")


@dataclass
class BenchConfig:
    batches: list[int] = field(default_factory=lambda: [1])
    threads: int | None = None
    duration: float = 10.0
    warmup: float = 2.0
    spinning: bool = True
    min_iterations: int = 10
    cuda_graph: bool = False  # TensorRT engines: replay CUDA graphs


def latency_stats(seconds: list[float]) -> dict:
    """p50/p90/p99/mean/std/min/max in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
        "std": float(ms.std()),
        "min": float(ms.min()),
        "max": float(ms.max()),
    }


def rss_mb() -> float:
    """Current resident memory of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def postprocess_for(task_name: str, cfg: PreprocessConfig, class_names: list[str], manifest: dict | None = None):
    """The post-processing stage ``bench_runner`` times for a model of this task: the task's one decoder with the
    settings an engine records (the defaults for a checkpoint), as predict and the camera loop run it."""
    from edgeres.tasks import get_task

    task = get_task(task_name)
    settings = task.settings(manifest or {}, {})
    return lambda outputs, frames: task.decode(
        outputs, [f.shape[:2] for f in frames], cfg.input_size, class_names, settings
    )


def bench_runner(
    runner,
    cfg: PreprocessConfig,
    frames: list[np.ndarray],
    batch: int,
    duration: float,
    warmup: float,
    min_iterations: int = 10,
    *,
    postprocess,
) -> dict:
    """Time an active runner stage by stage for ``duration`` seconds after ``warmup`` seconds.

    ``postprocess(outputs, frames)`` is the last stage (``postprocess_for``: the task's decoder).

    Returns:
        Per-stage latency stats (ms), iterations, throughput (images/s) and the batch size.
    """
    batch_frames = [frames[i % len(frames)] for i in range(batch)]
    times = {s: [] for s in STAGES}
    gpu: list[float] = []  # GPU compute time per call, apart from host time (as trtexec reports it)

    def one() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        x = preprocess(batch_frames, cfg)
        t1 = time.perf_counter()
        outputs = next(iter(runner.infer(x).values()))
        t2 = time.perf_counter()
        device = getattr(runner, "last_device_times", None)  # TensorRT: CUDA-event times of this call
        if device:
            gpu.append(device["compute_ms"] / 1e3)
        postprocess(outputs, batch_frames)
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        one()
    end = time.perf_counter() + duration
    while time.perf_counter() < end or len(times["end_to_end"]) < min_iterations:
        pre, inf, post = one()
        for name, value in zip(STAGES, (pre, inf, post, pre + inf + post), strict=True):
            times[name].append(value)
    total = sum(times["end_to_end"])
    return {
        "batch": batch,
        "samples_ms": [round(t * 1e3, 4) for t in times["end_to_end"]],
        "iterations": len(times["end_to_end"]),
        "throughput_ips": batch * len(times["end_to_end"]) / total,
        "latency_ms": {s: latency_stats(v) for s, v in times.items()},
    } | ({"gpu_compute_ms": latency_stats(gpu)} if gpu else {})


def bench_engine(target, cfg: BenchConfig, providers: list[str] | None = None) -> dict:
    """Benchmark an engine folder/file at every batch size in ``cfg``."""
    from edgeres.data.samples import camera_frames
    from edgeres.engine import open_engine

    before = rss_mb()
    engine = open_engine(
        target, threads=cfg.threads, providers=providers, spinning=cfg.spinning, cuda_graph=cfg.cuda_graph
    )
    max_batch = engine.manifest["input"].get("max_batch")
    too_big = [b for b in cfg.batches if max_batch is not None and b > max_batch]
    if too_big:  # refuse before measuring anything, not after the smaller batches ran for their full duration
        raise EdgeresError(
            f"batch {too_big[0]} is above the maximum batch {max_batch} of {engine.engine_file}; "
            "rebuild with a larger --max-batch"
        )
    frames = camera_frames()
    t0 = time.perf_counter()
    with engine:
        load_s = time.perf_counter() - t0
        post = postprocess_for(engine.task, engine.preprocess, engine.class_names, engine.manifest)
        results = [
            bench_runner(
                engine.runner,
                engine.preprocess,
                frames,
                b,
                cfg.duration,
                cfg.warmup,
                cfg.min_iterations,
                postprocess=post,
            )
            for b in cfg.batches
        ]
        loaded = rss_mb()
    m = engine.manifest
    return {
        "name": engine.name,
        "engine": str(engine.engine_file),
        "backend": m["backend"]["name"],
        "precision": m["precision"],
        "arch": m["arch"],
        "input_size": m["preprocess"]["input_size"],
        "load_seconds": load_s,
        "rss_increase_mb": loaded - before,
        "peak_rss_mb": peak_rss_mb(),
        "engine_size_mb": m["engine"]["size"] / 2**20,
        "results": results,
        "tuned_batch": m["input"].get("opt_batch"),  # TensorRT: the batch the engine was tuned for (--opt-batch)
    }


def tuning_notes(rows: list[dict]) -> list[str]:
    """One line per TensorRT engine timed at a batch it was not tuned for (its manifest's ``opt_batch``)."""
    notes = []
    for row in rows:
        tuned = row.get("tuned_batch")
        other = [r["batch"] for r in row["results"] if tuned is not None and r["batch"] != tuned]
        if other:
            notes.append(
                f"{row['name']} was tuned for batch {tuned} (--opt-batch); its batch "
                f"{', '.join(map(str, other))} timings run outside the tuned shape: build with --opt-batch "
                f"{other[-1]} to time that batch as TensorRT would tune it"
            )
    return notes


def bench_checkpoint(checkpoint, cfg: BenchConfig) -> dict:
    """Benchmark the torch reference (eager FP32) the same way."""
    from edgeres.backends.torch.loader import ModelLoader
    from edgeres.backends.torch.runner import TorchRunner
    from edgeres.data.samples import camera_frames
    from edgeres.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    config = ckpt.config
    before = rss_mb()
    frames = camera_frames()
    if ckpt.is_onnx:  # an ONNX model from elsewhere: its reference is ONNX Runtime FP32, not torch eager
        from edgeres.backends.onnxrt.loader import SessionLoader
        from edgeres.backends.onnxrt.runner import OnnxRuntimeRunner

        reference = OnnxRuntimeRunner(SessionLoader(ckpt.onnx_path, threads=cfg.threads))
        name, backend = "onnx-source", "onnxruntime"
    else:
        reference = TorchRunner(ModelLoader(checkpoint, threads=cfg.threads))
        name, backend = "torch-eager", "torch"
    with reference as runner:
        post = postprocess_for(config.task, config.preprocess, config.class_names)
        results = [
            bench_runner(
                runner, config.preprocess, frames, b, cfg.duration, cfg.warmup, cfg.min_iterations, postprocess=post
            )
            for b in cfg.batches
        ]
        loaded = rss_mb()
    return {
        "name": name,
        "engine": str(checkpoint),
        "backend": backend,
        "precision": "fp32",
        "arch": config.arch,
        "input_size": list(config.preprocess.input_size),
        "load_seconds": None,
        "rss_increase_mb": loaded - before,
        "peak_rss_mb": peak_rss_mb(),
        "engine_size_mb": None,
        "results": results,
    }


def bench_environment(cfg: BenchConfig) -> dict:
    """The machine, versions and settings a benchmark ran with (printed and stored with results)."""
    from edgeres.device.cpu import cpu_facts
    from edgeres.device.jetson import jetson_bench_facts
    from edgeres.device.packages import package_versions

    cpu = cpu_facts()
    versions = package_versions()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu["model"],
        "cpu_isa": cpu["isa"],
        "cores": cpu.get("usable_cores") or cpu.get("logical_cores"),
        "versions": {k: versions.get(k) for k in ("python", "edgeres", "torch", "onnxruntime", "opencv", "numpy")},
        "settings": asdict(cfg),
        "frames": "real photos (scikit-image) resized to 640x480 BGR uint8",
        "jetson": jetson_bench_facts(),  # power mode and locked clocks: every Jetson number depends on them
    }

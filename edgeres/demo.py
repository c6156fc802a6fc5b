"""``edgeres demo``: the pipeline start to finish on the bundled real digits, on a CPU in minutes.

data -> train ResNet-18 -> export (verified) -> calibrate INT8 with two methods -> build FP32 and INT8
CPU engines -> evaluate every engine on the val split -> benchmark them -> one summary table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeres.errors import EdgeresError

CALIBRATION_METHODS = ("entropy", "percentile")


@dataclass
class DemoResult:
    folder: Path
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    paths: dict[str, Path] = field(default_factory=dict)


def run_demo(out: Path, epochs: int = 4, force: bool = False, bench_seconds: float = 3.0, say=print) -> DemoResult:
    """Run every step into ``out`` and return the per-engine results.

    Args:
        out: demo folder (refused when it holds another demo, unless ``force``).
        epochs: training epochs (4 reach ~97-98 % on the digits).
        force: replace an existing demo folder's contents.
        bench_seconds: measured seconds per engine in the benchmark.
        say: where progress lines go.
    """
    from edgeres.bench import BenchConfig, bench_engine
    from edgeres.build import BuildConfig, build_engine
    from edgeres.data.digits import write_digits
    from edgeres.data.imagefolder import load_eval_split
    from edgeres.engine import open_engine
    from edgeres.evaluate import EvalImages, classification_metrics, predict_logits
    from edgeres.export import export_checkpoint
    from edgeres.quant.workflow import CalibConfig, run_calibration
    from edgeres.train import TrainConfig, train

    out = Path(out)
    if (out / "runs").exists() and not force:
        raise EdgeresError(f"{out} already holds a demo; pass --force to run it again there, or choose --out")
    start = time.perf_counter()
    result = DemoResult(out)
    data = out / "data" / "digits"
    say(f"1/6 writing the bundled real digits to {data}")
    write_digits(data, size=32, force=force, progress=False)
    say(f"2/6 training ResNet-18 for {epochs} epochs at 32x32 (2 CPU cores: about a minute)")
    run = out / "runs" / "digits"
    summary = train(TrainConfig(data=data, out=run, epochs=epochs, img_size=32, batch_size=64, force=True,
                                progress=False))
    ckpt = run / "best.safetensors"
    say(f"    best val top-1 {summary['best_val_top1']:.2f}% in {summary['train_seconds']:.0f} s -> {ckpt}")
    say("3/6 exporting ONNX and checking it against torch on real images")
    exported = export_checkpoint(ckpt, out / "r18.onnx", force=True)
    say(f"    {exported.path}: max abs difference {exported.max_abs_diff:.1e}")
    say(f"4/6 calibrating INT8 ({', '.join(CALIBRATION_METHODS)}) on 512 real training images")
    calibs = {m: run_calibration(CalibConfig(model=ckpt, data=data / "train", out=out / "calibration" / f"r18-{m}",
                                             method=m, num_images=512, force=True, progress=False))
              for m in CALIBRATION_METHODS}
    say("5/6 building engines: FP32 and INT8 (one per calibration) for ONNX Runtime on this CPU")
    engines = {"r18-fp32": BuildConfig(model=ckpt, out=out / "engines" / "r18-fp32", backend="onnxruntime",
                                       force=True)}
    for m, c in calibs.items():
        engines[f"r18-int8-{m}"] = BuildConfig(model=ckpt, out=out / "engines" / f"r18-int8-{m}",
                                               backend="onnxruntime", precision="int8", calib=c.folder, force=True)
    for cfg in engines.values():
        build_engine(cfg, progress=False)
    say(f"6/6 evaluating every engine on the val split and timing it ({bench_seconds:.0f} s each)")
    images = load_eval_split(data)
    fp32_pred = None
    for name, cfg in engines.items():
        with open_engine(cfg.out) as engine:
            val = EvalImages(images, engine.preprocess)
            logits = predict_logits(lambda x, e=engine: e.runner.infer(x)["logits"], val, batch_size=32)
        metrics = classification_metrics(val.labels, logits, images.class_names)
        pred = logits.argmax(1)
        fp32_pred = pred if fp32_pred is None else fp32_pred
        timing = bench_engine(cfg.out, BenchConfig(batches=[1], duration=bench_seconds, warmup=1.0))
        lat = timing["results"][0]["latency_ms"]
        result.rows.append({
            "engine": name, "precision": cfg.precision, "top1": metrics["top1"],
            "agreement": 100.0 * float((pred == fp32_pred).mean()),
            "infer_ms": lat["inference"]["p50"], "e2e_ms": lat["end_to_end"]["p50"],
            "size_mb": timing["engine_size_mb"], "path": str(cfg.out),
        })
    result.seconds = time.perf_counter() - start
    result.paths = {"data": data, "checkpoint": ckpt, "onnx": out / "r18.onnx", "engines": out / "engines",
                    "calibration": out / "calibration"}
    return result

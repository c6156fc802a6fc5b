"""Detection on digit-scenes, end to end: write the set, train a CenterNet ResNet-18 (timed), build FP32 and INT8
ONNX Runtime engines, and print mAP@0.5 / mAP@0.5:0.95 of torch, FP32 and INT8 side by side with batch-1 latency.

Run:  python benchmarks/detect_digit_scenes.py --out bench-detect [--epochs 30] [--init-from CLASSIFIER]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, machine_line, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="work folder (data, run, calibration, engines)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--init-from", type=Path, default=None, help="a classifier checkpoint for the backbone")
    parser.add_argument("--method", default="entropy", help="INT8 calibration method")
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--model", type=Path, default=None, help="skip training: evaluate this detector")
    args = parser.parse_args()

    from edgeres.build import BuildConfig, build_engine
    from edgeres.data.digit_scenes import write_digit_scenes
    from edgeres.engine import open_engine
    from edgeres.evaluate import evaluate_checkpoint, evaluate_open_engine
    from edgeres.processing import preprocess
    from edgeres.quant.workflow import CalibConfig, run_calibration
    from edgeres.train import TrainConfig, train

    out = args.out
    data = out / "digit-scenes"
    if not (data / "dataset.json").is_file():
        write_digit_scenes(data, size=args.img_size, progress=False)
    model = args.model
    train_seconds = None
    if model is None:
        cfg = TrainConfig(data=data, out=out / "run", arch="resnet18", task="detect", epochs=args.epochs,
                          img_size=args.img_size, batch_size=args.batch_size, optimizer="adamw", lr=args.lr,
                          weight_decay=1e-4, init_from=args.init_from, force=True, progress=False)
        t0 = time.perf_counter()
        summary = train(cfg)
        train_seconds = time.perf_counter() - t0
        model = out / "run" / "best.safetensors"
        print(f"trained {args.epochs} epochs in {train_seconds:.0f} s; "
              f"best val mAP@0.5 {summary['best_val_map50']:.4f}")

    calib = run_calibration(CalibConfig(model=model, data=data / "train", out=out / "calibration",
                                        method=args.method, num_images=args.num_images, force=True, progress=False))
    engines = {
        "FP32": build_engine(BuildConfig(model=model, out=out / "engines" / "fp32", backend="onnxruntime",
                                         force=True), progress=False)[0],
        f"INT8 ({args.method})": build_engine(BuildConfig(model=model, out=out / "engines" / "int8",
                                                         backend="onnxruntime", precision="int8",
                                                         calib=calib.folder, force=True), progress=False)[0],
    }
    rows, results = [], {"machine": machine_line(), "train_seconds": train_seconds, "model": str(model)}
    torch_metrics = evaluate_checkpoint(model, data / "val")
    results["torch"] = _keep(torch_metrics)
    metrics = {name: evaluate_open_engine(open_engine(path), data / "val") for name, path in engines.items()}
    frames = [f for f in _val_frames(data)]
    runners = {}
    for name, path in engines.items():
        engine = open_engine(path, threads=2)
        engine.__enter__()
        x = preprocess(frames[:1], engine.preprocess)
        runners[name] = (engine, x)
    times = interleaved({name: (lambda e=e, x=x: e.runner.infer(x)) for name, (e, x) in runners.items()},
                        rounds=5, per_round=20)
    for engine, _ in runners.values():
        engine.__exit__(None, None, None)
    fp32_map = metrics["FP32"]["map50"]
    rows.append(["torch FP32 (eager)", f"{torch_metrics['map50']:.4f}", f"{torch_metrics['map']:.4f}", "", ""])
    for name, m in metrics.items():
        ms = sorted(times[name])
        rows.append([f"edgeres {name} engine", f"{m['map50']:.4f}", f"{m['map']:.4f}",
                     f"{100 * (m['map50'] - fp32_map):+.2f}", f"{ms[len(ms) // 2]:.2f} ({ms[0]:.2f}-{ms[-1]:.2f})"])
        results[name] = _keep(m) | {"latency_ms_rounds": times[name]}
    print(machine_line())
    print_table(["model", "mAP@0.5", "mAP@0.5:0.95", "Δ mAP@0.5 vs FP32 (points)", "batch-1 ms (range)"], rows)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def _keep(m: dict) -> dict:
    return {k: m[k] for k in ("map50", "map", "map75", "images", "gt_boxes", "per_class_ap50")}


def _val_frames(data: Path):
    from edgeres.processing import read_image

    return [read_image(p) for p in sorted((data / "val" / "images").glob("*.png"))[:4]]


if __name__ == "__main__":
    main()

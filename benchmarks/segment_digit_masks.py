"""Segmentation on digit-masks, end to end: write the set, train a seg_resnet18 (timed), calibrate once, build FP32,
INT8 ONNX Runtime and INT8 OpenVINO engines, quantize the same FP32 ONNX with OpenVINO + NNCF post-training
quantization on the same calibration images, and print mIoU / pixel accuracy / batch-1 latency side by side; then
FP32 vs INT8 engine speed at a Cityscapes-like 512x256 input (the same weights; the network is fully convolutional).

Run:  python benchmarks/segment_digit_masks.py --out bench-segment --init-from CLASSIFIER
(the recorded run: 16 epochs at 96x96, batch 16, AdamW 3e-3 one-cycle; docs/benchmarks.md)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, machine_line, print_table

WIDE_HW = (256, 512)  # Cityscapes' 2:1 frames at a quarter of their 1024x2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="work folder (data, run, calibration, engines)")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=96)
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--init-from", type=Path, default=None, help="a resnet18 classifier for the backbone")
    parser.add_argument("--method", default="entropy", help="INT8 calibration method")
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None, help="skip training: benchmark this segmenter")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds (20 calls each)")
    args = parser.parse_args()

    from edgeres.build import BuildConfig, build_engine
    from edgeres.data.digit_masks import write_digit_masks
    from edgeres.evaluate import evaluate_checkpoint
    from edgeres.quant.workflow import CalibConfig, run_calibration
    from edgeres.train import TrainConfig, train

    out = args.out
    data = out / "digit-masks"
    if not (data / "dataset.json").is_file():
        write_digit_masks(data, size=args.img_size, train=args.train_images, progress=False)
    model, train_seconds = args.model, None
    if model is None:
        cfg = TrainConfig(
            data=data,
            out=out / "run",
            arch="resnet18",
            task="segment",
            epochs=args.epochs,
            img_size=args.img_size,
            batch_size=args.batch_size,
            optimizer="adamw",
            lr=args.lr,
            weight_decay=1e-4,
            label_smoothing=0.0,
            init_from=args.init_from,
            force=True,
            progress=False,
        )
        t0 = time.perf_counter()
        summary = train(cfg)
        train_seconds = time.perf_counter() - t0
        model = out / "run" / "best.safetensors"
        print(f"trained {args.epochs} epochs in {train_seconds:.0f} s; best val mIoU {summary['best_val_miou']:.4f}")

    calib_images = data / "train" / "images"  # the images, not the masks beside them
    calib = run_calibration(
        CalibConfig(
            model=model,
            data=calib_images,
            out=out / "calibration",
            method=args.method,
            num_images=args.num_images,
            force=True,
            progress=False,
        )
    )
    builds = {
        "FP32": {},
        "INT8 ONNX Runtime": {"precision": "int8", "calib": calib.folder},
        "INT8 OpenVINO": {"precision": "int8", "calib": calib.folder, "backend": "openvino"},
    }
    engines = {
        name: build_engine(
            BuildConfig(
                **{
                    "model": model,
                    "out": out / "engines" / name.replace(" ", "-"),
                    "backend": "onnxruntime",
                    "force": True,
                    **b,
                }
            ),
            progress=False,
        )[0]
        for name, b in builds.items()
    }
    results = {
        "machine": machine_line(),
        "train_seconds": train_seconds,
        "model": str(model),
        "torch": _keep(evaluate_checkpoint(model, data / "val")),
    }
    predictors, metrics = {}, {}
    for name, path in engines.items():
        engine, m = _open_and_score(path, data)
        predictors[name], metrics[name] = engine, m
    nncf_fn, nncf_metrics = _nncf_peer(calib.folder / "model.fp32.onnx", model, data, calib_images, args)
    if nncf_fn is not None:
        predictors["OpenVINO + NNCF PTQ INT8"], metrics["OpenVINO + NNCF PTQ INT8"] = nncf_fn, nncf_metrics
    x = _val_batch(model, data)
    times = interleaved({k: (lambda f=f: f(x)) for k, f in predictors.items()}, rounds=args.rounds, per_round=20)
    fp32 = metrics["FP32"]["miou"]
    rows = [["torch FP32 (eager)", f"{results['torch']['miou']:.4f}", f"{results['torch']['pixel_acc']:.4f}", "", ""]]
    for name, m in metrics.items():
        ms = times[name]
        rows.append(
            [
                name,
                f"{m['miou']:.4f}",
                f"{m['pixel_acc']:.4f}",
                f"{100 * (m['miou'] - fp32):+.2f}",
                f"{np.median(ms):.2f} ({min(ms):.2f}-{max(ms):.2f})",
            ]
        )
        results[name] = _keep(m) | {"latency_ms_rounds": times[name]}
    print(machine_line())
    print(
        f"digit-masks val ({results['torch']['images']} images, 11 classes), {args.img_size}x{args.img_size}, "
        f"calibration: {args.method} on {args.num_images} train images, {args.threads} threads"
    )
    print_table(["model", "mIoU", "pixel acc", "Δ mIoU vs FP32 (points)", "batch-1 ms median (range)"], rows)
    peer = "OpenVINO + NNCF PTQ INT8"
    for name in ("INT8 ONNX Runtime", "INT8 OpenVINO"):
        if peer in times:  # per round: machine noise hits both sides of each ratio alike
            ratios = np.asarray(times[peer]) / np.asarray(times[name])
            print(f"{peer} / edgeres {name}, per round: median {np.median(ratios):.2f}x "
                  f"({ratios.min():.2f}-{ratios.max():.2f}x)")
    results["wide"] = _wide_speed(model, calib.folder, out, args)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def _open_and_score(path: Path, data: Path):
    from edgeres.engine import open_engine
    from edgeres.evaluate import evaluate_open_engine

    metrics = evaluate_open_engine(open_engine(path), data / "val")
    engine = open_engine(path, threads=2)
    engine.__enter__()
    return (lambda x, e=engine: e.runner.infer(x)), metrics


def _val_batch(model: Path, data: Path) -> np.ndarray:
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.processing import preprocess, read_image

    pre = load_checkpoint(model).config.preprocess
    return preprocess([read_image(sorted((data / "val" / "images").glob("*.png"))[0])], pre)


def _nncf_peer(fp32_onnx: Path, model: Path, data: Path, calib_images: Path, args):
    """OpenVINO + NNCF PTQ of the same FP32 ONNX on the same calibration images, scored by the task's own scorer."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        print("openvino/nncf not installed (pip install 'edgeres[bench]'): the NNCF row is skipped")
        return None, None
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.processing import preprocess, read_image
    from edgeres.quant.workflow import select_images
    from edgeres.tasks import get_task

    pre = load_checkpoint(model).config.preprocess
    paths = select_images(calib_images, args.num_images, seed=0)  # the images edgeres calibrated on
    batches = [preprocess([read_image(p)], pre) for p in paths]
    core = ov.Core()
    quantized = nncf.quantize(core.read_model(str(fp32_onnx)), nncf.Dataset(batches), subset_size=len(batches))
    compiled = core.compile_model(
        quantized, "CPU", {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"}
    )
    request = compiled.create_infer_request()

    def predict(x):
        return request.infer({0: x})[0].copy()

    task = get_task("segment")
    eval_set = task.load_eval_set(data / "val", pre)
    scorer = task.scorer(eval_set)
    for x, hws in eval_set.eval_batches(1):
        scorer.add(predict(x), hws)
    return predict, scorer.result()


def _wide_speed(model: Path, calib: Path, out: Path, args) -> dict:
    """FP32 vs INT8 ONNX Runtime engines at 512x256, batch 1: the same weights saved with a wide input size."""
    from dataclasses import replace

    import cv2

    from edgeres.build import BuildConfig, build_engine
    from edgeres.engine import open_engine
    from edgeres.models.checkpoint import load_checkpoint, save_checkpoint
    from edgeres.models.registry import get_model
    from edgeres.processing import read_image
    from edgeres.quant.workflow import CalibConfig, run_calibration

    ckpt = load_checkpoint(model)
    net = get_model(ckpt.config.arch, num_classes=len(ckpt.config.class_names))
    net.load_state_dict(ckpt.state_dict)
    cfg = replace(ckpt.config, preprocess=replace(ckpt.config.preprocess, input_size=WIDE_HW))
    wide = out / "wide" / "model.safetensors"
    save_checkpoint(wide, net, cfg)
    # Speed only: calibrated on 64 train images stretched to 512x256 (the engine refuses much smaller ones).
    stretched = out / "wide" / "images"
    stretched.mkdir(parents=True, exist_ok=True)
    for path in sorted((out / "digit-masks" / "train" / "images").glob("*.png"))[:64]:
        cv2.imwrite(str(stretched / path.name), cv2.resize(read_image(path), (WIDE_HW[1], WIDE_HW[0])))
    wide_calib = run_calibration(
        CalibConfig(
            model=wide,
            data=stretched,
            out=out / "wide" / "calibration",
            method=args.method,
            num_images=64,
            force=True,
            progress=False,
        )
    )
    engines = {
        "FP32": build_engine(
            BuildConfig(model=wide, out=out / "wide" / "fp32", backend="onnxruntime", force=True), progress=False
        )[0],
        "INT8": build_engine(
            BuildConfig(
                model=wide,
                out=out / "wide" / "int8",
                backend="onnxruntime",
                precision="int8",
                calib=wide_calib.folder,
                force=True,
            ),
            progress=False,
        )[0],
    }
    x = np.random.default_rng(0).standard_normal((1, 3, *WIDE_HW)).astype(np.float32)
    opened = {k: open_engine(p, threads=args.threads) for k, p in engines.items()}
    for e in opened.values():
        e.__enter__()
    times = interleaved({k: (lambda e=e: e.runner.infer(x)) for k, e in opened.items()}, rounds=5, per_round=10)
    rows = [[k, f"{np.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"] for k, v in times.items()]
    rows.append(["INT8 / FP32 speed-up", f"{np.median(times['FP32']) / np.median(times['INT8']):.2f}x"])
    print(f"{WIDE_HW[1]}x{WIDE_HW[0]} input, batch 1, {args.threads} threads (inference only; random input)")
    print_table(["ONNX Runtime engine", "ms median (range)"], rows)
    return {k: v for k, v in times.items()}


def _keep(m: dict) -> dict:
    return {k: m[k] for k in ("miou", "pixel_acc", "mean_class_acc", "images", "per_class")}


if __name__ == "__main__":
    main()

"""INT8 accuracy per calibration method: top-1, change vs FP32 and top-1 agreement with FP32, for the
edgeres INT8 CPU engine built from each method's Q/DQ artifact (the clutter set is where losses show).

Run:  python benchmarks/int8_accuracy.py --model runs/clutter/best.safetensors --data data/digits-clutter
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line, print_table

METHODS = ("entropy", "minmax", "percentile", "mse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="ImageFolder with train/ (calibration) and val/")
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--percentile", type=float, default=99.99)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--qat-epochs", type=int, default=0, help="also QAT from the first method's calibration")
    parser.add_argument("--qat-lr", type=float, default=1e-3)
    args = parser.parse_args()

    from edgeres.build import BuildConfig, build_engine
    from edgeres.data.imagefolder import load_eval_split
    from edgeres.engine import open_engine
    from edgeres.quant.workflow import CalibConfig, run_calibration
    from edgeres.tasks.classify.data import EvalImages
    from edgeres.tasks.scoring import predict_outputs

    work = Path(tempfile.mkdtemp())

    def engine_logits(folder: Path, val: EvalImages) -> np.ndarray:
        with open_engine(folder) as engine:
            return predict_outputs(lambda x: engine.runner.infer(x)["logits"], val, batch_size=32)

    build_engine(BuildConfig(model=args.model, out=work / "fp32", backend="onnxruntime"), progress=False)
    with open_engine(work / "fp32") as fp32_engine:
        val = EvalImages(load_eval_split(args.data), fp32_engine.preprocess)
    fp32 = engine_logits(work / "fp32", val).argmax(1)
    labels = val.labels
    fp32_top1 = 100 * (fp32 == labels).mean()
    rows = [["FP32 engine", "-", f"{fp32_top1:.2f}", "-", "100.0", "-"]]
    for method in args.methods.split(","):
        start = time.perf_counter()
        calib = run_calibration(CalibConfig(model=args.model, data=args.data / "train", out=work / f"calib-{method}",
                                            method=method, percentile=args.percentile, num_images=args.num_images,
                                            progress=False))
        seconds = time.perf_counter() - start
        build_engine(BuildConfig(model=args.model, out=work / method, backend="onnxruntime", precision="int8",
                                 calib=calib.folder), progress=False)
        pred = engine_logits(work / method, val).argmax(1)
        top1 = 100 * (pred == labels).mean()
        name = f"{method} ({args.percentile})" if method == "percentile" else method
        rows.append([f"INT8 {name}", args.num_images, f"{top1:.2f}", f"{top1 - fp32_top1:+.2f}",
                     f"{100 * (pred == fp32).mean():.1f}", f"{seconds:.0f}"])
    if args.qat_epochs:
        from edgeres.quant.qat import QatConfig, qat

        first = args.methods.split(",")[0]
        start = time.perf_counter()
        qat(QatConfig(model=args.model, data=args.data, out=work / "qat", epochs=args.qat_epochs, lr=args.qat_lr,
                      calib=work / f"calib-{first}", progress=False))
        seconds = time.perf_counter() - start
        build_engine(BuildConfig(model=work / "qat" / "best.safetensors", out=work / "int8-qat", backend="onnxruntime",
                                 precision="int8", calib=work / "qat" / "calibration"), progress=False)
        pred = engine_logits(work / "int8-qat", val).argmax(1)
        top1 = 100 * (pred == labels).mean()
        rows.append([f"INT8 QAT ({args.qat_epochs} epochs from {first}, lr {args.qat_lr})", "-", f"{top1:.2f}",
                     f"{top1 - fp32_top1:+.2f}", f"{100 * (pred == fp32).mean():.1f}", f"{seconds:.0f} (QAT)"])
    print(machine_line())
    print(f"{args.model} on {len(labels)} val images of {args.data}; calibration images from {args.data}/train\n")
    print_table(["engine", "calib images", "top-1 %", "vs FP32 (points)", "top-1 agreement w/ FP32 %",
                 "calibration s"], rows)


if __name__ == "__main__":
    main()

"""CPU INT8 speed and accuracy, side by side on the same trained model and calibration images:
the edgeres INT8 engine vs ONNX Runtime's `quantize_static` (its fastest settings) vs OpenVINO with
NNCF post-training quantization, plus the edgeres FP32 engine and PyTorch eager FP32.

ResNet-18 at 224x224, batch 1, the same thread count everywhere; timing rounds are interleaved.
The model is the clutter-set ResNet-18 (trained at 64x64), run at 224x224 on the same images
upscaled: every variant sees identical inputs, so accuracies compare (they are lower than at 64x64).

Needs the `bench` extra (openvino, nncf) for the OpenVINO row.
Run:  python benchmarks/cpu_int8_speed.py --model runs/clutter/best.safetensors --data data/digits-clutter
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, machine_line, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="ImageFolder with train/ (calibration) and val/")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--method", default="entropy", help="edgeres calibration method")
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=20)
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    from edgeres.build import BuildConfig, build_engine
    from edgeres.config import ModelConfig
    from edgeres.data.imagefolder import load_eval_split
    from edgeres.engine import open_engine
    from edgeres.evaluate import EvalImages
    from edgeres.models.checkpoint import load_checkpoint, save_checkpoint
    from edgeres.processing import preprocess, read_image
    from edgeres.quant.workflow import CalibConfig, run_calibration, select_images

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp())
    ckpt = load_checkpoint(args.model)
    pre = replace(ckpt.config.preprocess, input_size=(args.size, args.size))
    config = ModelConfig(ckpt.config.arch, ckpt.config.class_names, preprocess=pre)
    model = ckpt.build_model()
    model_file = work / "model.safetensors"
    save_checkpoint(model_file, model, config)

    # The same calibration images for everyone, resized to the network size as the val images are (written
    # out so that `edgeres calibrate` sees images of the size the engine sees).
    import cv2

    calib_paths = select_images(args.data / "train", args.num_images, seed=0)
    calib_dir = work / "calib-images"
    calib_dir.mkdir()
    for i, p in enumerate(calib_paths):
        cv2.imwrite(str(calib_dir / f"{i:05d}.png"), cv2.resize(read_image(p), (args.size, args.size)))
    calib_batches = [preprocess([read_image(p)], pre) for p in calib_paths]
    val = EvalImages(load_eval_split(args.data), pre)

    # edgeres: FP32 engine, then calibrate + INT8 engine.
    build_engine(BuildConfig(model=model_file, out=work / "fp32", backend="onnxruntime"), progress=False)
    calib = run_calibration(CalibConfig(model=model_file, data=calib_dir, out=work / "calib",
                                        method=args.method, num_images=args.num_images, progress=False))
    build_engine(BuildConfig(model=model_file, out=work / "int8", backend="onnxruntime", precision="int8",
                             calib=calib.folder), progress=False)
    fp32_onnx = calib.fp32_onnx

    # ONNX Runtime's own flow: pre-process, quantize_static (QDQ, u8 asymmetric activations, s8 per-channel
    # weights: the fastest of its settings on x86 per DESIGN.md's measurements).
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"input": b} for b in calib_batches)

        def get_next(self):
            return next(self.it, None)

    ort_pre, ort_q = work / "ort_pre.onnx", work / "ort_int8.onnx"
    quant_pre_process(str(fp32_onnx), str(ort_pre))
    quantize_static(str(ort_pre), str(ort_q), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.log_severity_level = 3
    ort_session = ort.InferenceSession(str(ort_q), so, providers=["CPUExecutionProvider"])

    predictors = {}
    engines = {name: open_engine(work / name, threads=args.threads) for name in ("int8", "fp32")}
    for e in engines.values():
        e.runner.activate()
    predictors["edgeres INT8 engine (ONNX Runtime)"] = lambda x: engines["int8"].runner.infer(x)["logits"]
    predictors["ONNX Runtime quantize_static INT8"] = lambda x: ort_session.run(None, {"input": x})[0]
    try:
        import nncf
        import openvino as ov

        core = ov.Core()
        ov_fp32 = core.read_model(str(fp32_onnx))
        ov_int8 = nncf.quantize(ov_fp32, nncf.Dataset(calib_batches), subset_size=len(calib_batches))
        compiled = core.compile_model(ov_int8, "CPU", {"INFERENCE_NUM_THREADS": args.threads,
                                                        "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        predictors["OpenVINO + NNCF PTQ INT8"] = lambda x: request.infer({0: x})[0].copy()
    except ImportError:
        print("openvino/nncf not installed (pip install 'edgeres[bench]'): the OpenVINO row is skipped")
    predictors["edgeres FP32 engine (ONNX Runtime)"] = lambda x: engines["fp32"].runner.infer(x)["logits"]

    def eager(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    predictors["PyTorch eager FP32"] = eager

    # Accuracy on the val split, then interleaved timing on one real image.
    preds = {}
    for name, f in predictors.items():
        preds[name] = np.concatenate([f(x[i:i + 1]) for x in val.batches(64) for i in range(len(x))]).argmax(1)
    x = next(val.batches(1))
    medians = interleaved({k: (lambda f=f: f(x)) for k, f in predictors.items()}, rounds=args.rounds,
                          per_round=args.per_round)
    labels, ref = val.labels, preds["PyTorch eager FP32"]
    fp32_engine = np.median(medians["edgeres FP32 engine (ONNX Runtime)"])
    eager_ms = np.median(medians["PyTorch eager FP32"])
    print(machine_line())
    print(f"ResNet-18 {args.size}x{args.size} batch 1, {args.threads} threads, {args.rounds} interleaved rounds of "
          f"{args.per_round}; {len(calib_paths)} calibration images from {args.data}/train; accuracy on "
          f"{len(labels)} val images; edgeres method {args.method}\n")
    rows = []
    for name, v in medians.items():
        med = np.median(v)
        rows.append([name, f"{med:.1f}", f"{min(v):.1f}-{max(v):.1f}", f"{fp32_engine / med:.2f}x",
                     f"{eager_ms / med:.2f}x", f"{100 * (preds[name] == labels).mean():.1f}",
                     f"{100 * (preds[name] == ref).mean():.1f}"])
    print_table(["runtime", "median ms", "range", "vs edgeres FP32", "vs eager", "top-1 %", "agree w/ FP32 %"], rows)
    for e in engines.values():
        e.runner.deactivate()


if __name__ == "__main__":
    main()

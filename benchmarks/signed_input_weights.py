"""What the 64-step weights of signed-input ops cost in accuracy (``edgeres.quant.signs``): for each calibration
method, the Q/DQ artifact as edgeres writes it (the stem's weights on -64..64) and the same artifact with those
weights on -127..127, both run as written (ONNX Runtime, optimizations off: float arithmetic on the dequantized
values, so no CPU kernel's saturation is involved) on the val images, against the FP32 model.

Run:  python benchmarks/signed_input_weights.py --model r18/best.safetensors --data digits --size 224
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import calibration_images_at_size, machine_line, model_at_size, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a classifier checkpoint (.safetensors)")
    parser.add_argument("--data", type=Path, required=True, help="ImageFolder with train/ (calibration) and val/")
    parser.add_argument("--size", type=int, default=0, help="network input size (default: the checkpoint's)")
    parser.add_argument("--num-images", type=int, default=256, help="calibration images")
    parser.add_argument("--methods", default="entropy,mse,percentile")
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort

    from edgeres.data.imagefolder import load_eval_split
    from edgeres.models.checkpoint import load_checkpoint
    from edgeres.quant.qdq import write_qdq
    from edgeres.quant.scales import QMAX
    from edgeres.quant.workflow import CalibConfig, run_calibration
    from edgeres.tasks.classify.data import EvalImages
    from edgeres.tasks.scoring import predict_outputs

    work = Path(tempfile.mkdtemp())
    size = args.size or load_checkpoint(args.model).config.preprocess.input_size[0]
    model_file, pre, _ = model_at_size(args.model, size, work)
    val = EvalImages(load_eval_split(args.data), pre)
    labels = val.labels
    _, calib_data = calibration_images_at_size(args.data / "train", size, args.num_images, work)

    def logits(model) -> np.ndarray:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return predict_outputs(lambda x: session.run(None, {name: x})[0], val, batch_size=32)

    rows, fp32 = [], None
    for method in args.methods.split(","):
        calib = run_calibration(CalibConfig(model=model_file, data=calib_data, out=work / method,
                                            method=method, num_images=args.num_images, progress=False))
        fp32_model = onnx.load(str(calib.fp32_onnx))
        if fp32 is None:
            fp32 = logits(fp32_model)
            rows.append(["FP32", "-", f"{100 * (fp32.argmax(1) == labels).mean():.2f}", "-", "-", "-"])
        wide = logits(write_qdq(fp32_model, calib.scales, signed_input_qmax=QMAX))
        narrow = logits(write_qdq(fp32_model, calib.scales))
        spread = float(wide.std())
        for name, out in ((f"{method}: signed-input weights on -127..127", wide),
                          (f"{method}: on -64..64 (what edgeres writes)", narrow)):
            rows.append([name, args.num_images, f"{100 * (out.argmax(1) == labels).mean():.2f}",
                         f"{100 * (out.argmax(1) == fp32.argmax(1)).mean():.1f}",
                         f"{100 * (out.argmax(1) == wide.argmax(1)).mean():.1f}",
                         f"{np.abs(out - wide).max() / spread:.3f}"])
    print(machine_line())
    print(f"{args.model} at {pre.input_size[0]}x{pre.input_size[1]} on {len(labels)} val images of {args.data}; "
          f"calibration images from {args.data}/train; Q/DQ artifacts run as written\n")
    print_table(["model", "calib images", "top-1 %", "top-1 agreement w/ FP32 %", "agreement w/ the -127..127 form %",
                 "max |Δlogit| vs that form / spread"], rows)


if __name__ == "__main__":
    main()

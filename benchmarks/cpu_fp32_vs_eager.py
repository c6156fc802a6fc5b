"""ResNet-18, 224x224, batch 1: PyTorch eager vs the edgeres ONNX Runtime FP32 engine, interleaved.

Both run the same weights on the same real photo (pre-processed once, outside the timed region), with
the same thread count. Prints the median of each round, the spread across rounds and the ratio.

Run:  python benchmarks/cpu_fp32_vs_eager.py [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, machine_line, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=20)
    args = parser.parse_args()

    import torch
    import torchvision

    from edgeres.build import BuildConfig, build_engine
    from edgeres.config import ModelConfig, PreprocessConfig
    from edgeres.data.samples import camera_frames
    from edgeres.engine import open_engine
    from edgeres.models.checkpoint import save_checkpoint
    from edgeres.processing import preprocess

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = torchvision.models.resnet18(num_classes=1000).eval()
    config = ModelConfig("resnet18", [str(i) for i in range(1000)], preprocess=PreprocessConfig(input_size=(224, 224)))
    work = Path(tempfile.mkdtemp())
    ckpt = work / "r18.safetensors"
    save_checkpoint(ckpt, model, config)
    build_engine(BuildConfig(model=ckpt, out=work / "r18-fp32", backend="onnxruntime"))
    x = preprocess(camera_frames(1), config.preprocess)
    xt = torch.from_numpy(x)

    engine = open_engine(work / "r18-fp32", threads=args.threads)
    with engine, torch.inference_mode():
        runs = {
            "PyTorch eager FP32": lambda: model(xt),
            "edgeres ONNX Runtime FP32 engine": lambda: engine.runner.infer(x),
        }
        got = engine.runner.infer(x)["logits"]
        assert np.abs(got - model(xt).numpy()).max() < 1e-3
        medians = interleaved(runs, rounds=args.rounds, per_round=args.per_round)
    print(machine_line())
    print(f"ResNet-18 224x224 batch 1, {args.threads} threads, median of {args.per_round} calls per round, "
          f"{args.rounds} interleaved rounds\n")
    rows = [[k, f"{np.median(v):.1f}", f"{min(v):.1f}-{max(v):.1f}"] for k, v in medians.items()]
    print_table(["runtime", "median ms", "range across rounds"], rows)
    eager, ort = medians["PyTorch eager FP32"], medians["edgeres ONNX Runtime FP32 engine"]
    ratios = [e / o for e, o in zip(eager, ort, strict=True)]
    print(f"\nspeed-up of the engine over eager: {np.median(ratios):.2f}x "
          f"(per round {min(ratios):.2f}-{max(ratios):.2f}x)")


if __name__ == "__main__":
    main()

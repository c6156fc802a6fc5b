"""Shared by the benchmark scripts: a model and its calibration images at another input size, interleaved timing
rounds and plain-text tables."""

from __future__ import annotations

import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def machine_line() -> str:
    from edgeres.device.cpu import cpu_facts

    cpu = cpu_facts()
    return (f"{cpu['model']} ({cpu['isa']}, {cpu.get('usable_cores') or cpu.get('logical_cores')} cores), "
            f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def model_at_size(checkpoint: Path, size: int, work: Path):
    """``checkpoint`` saved again under ``work`` with its network input set to ``size`` x ``size`` (the same weights;
    ResNets take any size). Returns (model file, preprocessing, the torch model)."""
    from edgeres.config import ModelConfig
    from edgeres.models.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(checkpoint)
    pre = replace(ckpt.config.preprocess, input_size=(size, size))
    model = ckpt.build_model()
    model_file = work / "model.safetensors"
    save_checkpoint(model_file, model, ModelConfig(ckpt.config.arch, ckpt.config.class_names, preprocess=pre))
    return model_file, pre, model


def calibration_images_at_size(train: Path, size: int, num_images: int, work: Path) -> tuple[list[Path], Path]:
    """The seeded calibration choice of ``train`` (as ``edgeres calibrate`` picks it), resized to ``size`` x ``size``
    and written to ``work/calib-images``, so that calibration sees images of the size the engine sees. Returns (the
    chosen originals, the folder)."""
    import cv2

    from edgeres.processing import read_image
    from edgeres.quant.workflow import select_images

    paths = select_images(train, num_images, seed=0)
    folder = work / "calib-images"
    folder.mkdir()
    for i, p in enumerate(paths):
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.resize(read_image(p), (size, size)))
    return paths, folder


def interleaved(runs: dict, rounds: int = 5, per_round: int = 20, warmup: int = 10, seed: int = 0
                ) -> dict[str, list[float]]:
    """Median ms of ``per_round`` calls of each function, in ``rounds`` interleaved rounds (machine noise hits every
    variant alike). Each round visits the functions in a new random order, and each function's block starts after
    a 0.2 s pause and two untimed calls: ONNX Runtime's intra-op threads spin for a while after a call (and
    OpenVINO's wait), so in a fixed order the row that follows another runtime's would pay for its spinning threads,
    a bias that depends only on the row's position (measured: docs/benchmarks.md, issue 16)."""
    import random

    for f in runs.values():
        for _ in range(warmup):
            f()
    order = list(runs)
    rng = random.Random(seed)
    medians = {k: [] for k in runs}
    for _ in range(rounds):
        rng.shuffle(order)
        for k in order:
            time.sleep(0.2)
            runs[k]()
            runs[k]()
            ts = []
            for _ in range(per_round):
                t = time.perf_counter()
                runs[k]()
                ts.append(time.perf_counter() - t)
            medians[k].append(float(np.median(ts)) * 1e3)
    return medians


def print_table(headers: list[str], rows: list[list]) -> None:
    """A Markdown table (pastes straight into docs/benchmarks.md)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for r in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")

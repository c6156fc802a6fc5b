"""Classify image files with an engine (the same pre/post-processing as every other path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.processing import preprocess, read_image, softmax, topk


def classify(runner, cfg, class_names: list[str], images: list[np.ndarray], top_k: int = 5) -> list[list[dict]]:
    """Top-k predictions (label, index, score) for BGR uint8 images with an active runner."""
    probs = softmax(next(iter(runner.infer(preprocess(images, cfg)).values())))
    idx, val = topk(probs, top_k)
    return [[{"label": class_names[i], "index": int(i), "score": float(s)} for i, s in zip(ri, rv, strict=True)]
            for ri, rv in zip(idx, val, strict=True)]


def predict_files(engine_target: Path, paths: list[Path], top_k: int = 5, threads: int | None = None) -> list[dict]:
    """Decode every image first (a bad file fails before any work), then classify them in batches."""
    from edgeres.engine import open_engine

    images = [read_image(p) for p in paths]
    engine = open_engine(engine_target, threads=threads)
    if engine.task != "classify":
        raise EdgeresError(f"{engine.engine_file} is a '{engine.task}' engine; predict classifies images")
    batch = engine.manifest["input"].get("max_batch") or len(images)
    results = []
    with engine:
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            for path, top in zip(paths[start:start + batch],
                                 classify(engine.runner, engine.preprocess, engine.class_names, chunk, top_k),
                                 strict=True):
                results.append({"image": str(path), "top": top})
    return results

"""Classify or detect in image files with an engine (the same pre/post-processing as every other path)."""

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


def detection_settings(manifest: dict, score_threshold: float | None = None, nms_iou: float | None = None) -> dict:
    """A detect engine's decoding settings: the manifest's defaults, overridden where asked."""
    settings = dict(manifest.get("detection") or {})
    if not settings:
        raise EdgeresError("the engine manifest has no 'detection' block; rebuild the engine with this edgeres")
    if score_threshold is not None:
        settings["score_threshold"] = score_threshold
    if nms_iou is not None:
        settings["nms_iou"] = nms_iou
    if not 0.0 <= settings["score_threshold"] <= 1.0 or not 0.0 < settings["nms_iou"] <= 1.0:
        raise EdgeresError(f"--score-threshold must be in [0, 1] and --nms-iou in (0, 1]; got "
                           f"{settings['score_threshold']} and {settings['nms_iou']}")
    return settings


def detect(runner, cfg, num_classes: int, images: list[np.ndarray], settings: dict) -> list:
    """Boxes in original-image pixels (``edgeres.tasks.detect.decode.Detections``) for BGR uint8 images."""
    from edgeres.evaluate_detect import decode_maps

    maps = next(iter(runner.infer(preprocess(images, cfg)).values()))
    return decode_maps(maps, num_classes, cfg.input_size, [img.shape[:2] for img in images], settings)


def detections_to_json(det, class_names: list[str]) -> list[dict]:
    return [{"label": class_names[int(c)], "index": int(c), "score": round(float(s), 4),
             "box": [round(float(v), 2) for v in b]}
            for b, s, c in zip(det.boxes, det.scores, det.labels, strict=True)]


def predict_files(engine_target: Path, paths: list[Path], top_k: int = 5, threads: int | None = None,
                  score_threshold: float | None = None, nms_iou: float | None = None,
                  draw_dir: Path | None = None, force: bool = False) -> list[dict]:
    """Decode every image first (a bad file fails before any work), then classify or detect in batches.

    Args:
        draw_dir: detect engines: also write each image with its boxes drawn into this folder (same file name;
            an existing file is only replaced with ``force``).
    """
    from edgeres.engine import open_engine

    images = [read_image(p) for p in paths]
    engine = open_engine(engine_target, threads=threads)
    if engine.task not in ("classify", "detect"):
        raise EdgeresError(f"{engine.engine_file} is a '{engine.task}' engine; predict classifies or detects")
    if draw_dir is not None and engine.task != "detect":
        raise EdgeresError("--draw writes boxes and needs a detect engine; this one classifies")
    settings = detection_settings(engine.manifest, score_threshold, nms_iou) if engine.task == "detect" else {}
    targets = _draw_targets(paths, draw_dir, force) if draw_dir is not None else None
    batch = engine.manifest["input"].get("max_batch") or len(images)
    results = []
    with engine:
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            if engine.task == "classify":
                found = classify(engine.runner, engine.preprocess, engine.class_names, chunk, top_k)
                results += [{"image": str(p), "top": top} for p, top in zip(paths[start:start + batch], found,
                                                                            strict=True)]
                continue
            found = detect(engine.runner, engine.preprocess, len(engine.class_names), chunk, settings)
            for k, det in enumerate(found):
                i = start + k
                results.append({"image": str(paths[i]), "detections": detections_to_json(det, engine.class_names)})
                if targets is not None:
                    _write_drawn(images[i], det, engine.class_names, targets[i])
                    results[-1]["drawn"] = str(targets[i])
    return results


def _draw_targets(paths: list[Path], draw_dir: Path, force: bool) -> list[Path]:
    """Where each drawn image goes; refuses name clashes and existing files (without ``force``) up front."""
    draw_dir = Path(draw_dir)
    targets = [draw_dir / Path(p).name for p in paths]
    if len(set(targets)) != len(targets):
        raise EdgeresError(f"two input images share a file name; --draw {draw_dir} would write one over the other")
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise EdgeresError(f"{existing[0]} already exists; pass --force to overwrite drawn images")
    draw_dir.mkdir(parents=True, exist_ok=True)
    return targets


def _write_drawn(image: np.ndarray, det, class_names: list[str], target: Path) -> None:
    from edgeres.tasks.detect.draw import draw_detections
    from edgeres.errors import require
    from edgeres.fileio import atomic_path

    cv2 = require("cv2", "desktop")
    drawn = draw_detections(image, det, class_names)
    ok, encoded = cv2.imencode(target.suffix if target.suffix else ".png", drawn)
    if not ok:
        raise EdgeresError(f"cannot encode {target.name}: OpenCV has no writer for '{target.suffix}'")
    with atomic_path(target) as tmp:
        tmp.write_bytes(encoded.tobytes())

"""Predictions on image files with an engine, for any task: the same pre-processing, decoder and JSON form as
``eval``, ``bench`` and the camera loop (all from ``edgeres.tasks``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.processing import preprocess, read_image


def predict_images(runner, pre, task, class_names: list[str], images: list[np.ndarray], settings: dict) -> list:
    """The task's decoded predictions for BGR uint8 images with an active runner (one per image, in the
    original images' pixels where the task has coordinates).

    Args:
        runner: an activated runner (``engine.runner`` inside ``with engine``, or a torch runner).
        pre: the model's ``PreprocessConfig``.
        task: the model's ``edgeres.tasks.base.Task``.
        settings: the task's decoding settings (``task.settings(manifest, overrides)``).
    """
    outputs = next(iter(runner.infer(preprocess(images, pre)).values()))
    return task.decode(outputs, [img.shape[:2] for img in images], pre.input_size, class_names, settings)


def prediction_record(image: str, task, prediction, class_names: list[str]) -> dict:
    """One image's line in ``predict --json``: its versioned JSON form (docs/json.md)."""
    return {
        "image": image,
        "task": task.name,
        "schema": task.json_schema,
        "predictions": task.to_json(prediction, class_names),
    }


def predict_files(
    engine_target: Path,
    paths: list[Path],
    threads: int | None = None,
    options: dict | None = None,
    draw_dir: Path | None = None,
    force: bool = False,
) -> list[dict]:
    """Decode every image first (a bad file fails before any work), then predict in batches.

    Args:
        options: the task-specific options given (``top_k``, ``score_threshold``, ``nms_iou``; None: not
            given); one this engine's task does not take is refused, naming the tasks that take it.
        draw_dir: also write each image with its predictions drawn (the task's drawing) into this folder (same
            file name; an existing file is only replaced with ``force``).

    Returns:
        One record per image (``prediction_record``), with ``drawn`` (the written file) when drawing.
    """
    from edgeres.engine import open_engine
    from edgeres.tasks import get_task

    images = [read_image(p) for p in paths]
    engine = open_engine(engine_target, threads=threads)
    task = get_task(engine.task)
    options = options or {}
    task.check_options(options)
    settings = task.settings(engine.manifest, options)
    targets = _draw_targets(paths, draw_dir, force, task) if draw_dir is not None else None
    batch = engine.manifest["input"].get("max_batch") or len(images)
    results = []
    with engine:
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            found = predict_images(engine.runner, engine.preprocess, task, engine.class_names, chunk, settings)
            for i, prediction in enumerate(found, start):
                results.append(prediction_record(str(paths[i]), task, prediction, engine.class_names))
                if targets is not None:
                    drawn = task.draw(images[i].copy(), prediction, engine.class_names, settings)
                    _write_image(drawn, targets[i])
                    results[-1]["drawn"] = str(targets[i])
                    for kind, path in task.extra_draw_files(targets[i]).items():
                        task.write_extra_file(kind, prediction, engine.class_names, path)
                        results[-1][kind] = str(path)
    return results


def _draw_targets(paths: list[Path], draw_dir: Path, force: bool, task) -> list[Path]:
    """Where each drawn image goes; refuses name clashes and existing files (the task's extra files beside each
    drawn image included; without ``force``) up front."""
    draw_dir = Path(draw_dir)
    targets = [draw_dir / Path(p).name for p in paths]
    written = targets + [f for t in targets for f in task.extra_draw_files(t).values()]
    if len(set(written)) != len(written):
        raise EdgeresError(f"two input images share a file name; --draw {draw_dir} would write one over the other")
    existing = [t for t in written if t.exists()]
    if existing and not force:
        raise EdgeresError(f"{existing[0]} already exists; pass --force to overwrite drawn images")
    draw_dir.mkdir(parents=True, exist_ok=True)
    return targets


def _write_image(image: np.ndarray, target: Path) -> None:
    from edgeres.errors import require
    from edgeres.fileio import atomic_path

    cv2 = require("cv2", "desktop")
    ok, encoded = cv2.imencode(target.suffix if target.suffix else ".png", image)
    if not ok:
        raise EdgeresError(f"cannot encode {target.name}: OpenCV has no writer for '{target.suffix}'")
    with atomic_path(target) as tmp:
        tmp.write_bytes(encoded.tobytes())

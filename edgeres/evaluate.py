"""Evaluation for every task: a checkpoint or an engine on a labelled split, scored by the task's metrics.

Images go through the same numpy/OpenCV pre-processing as every engine, and through the task's one decoder and
scorer (``edgeres.tasks.scoring``).
"""

from __future__ import annotations

from pathlib import Path

from edgeres.tasks.scoring import engine_predict_fn, score, torch_predict_fn


def evaluate_checkpoint(ckpt_path, data_dir, batch_size: int = 64, arch: str | None = None,
                        progress: bool = False) -> dict:
    """Load a checkpoint of any task, check its classes against the data and return its metrics."""
    from edgeres.models.checkpoint import checkpoint_task, load_checkpoint, require_matching_classes
    from edgeres.tasks import get_task

    task = get_task(checkpoint_task(ckpt_path))
    split = task.load_eval_split(Path(data_dir))
    ckpt = load_checkpoint(ckpt_path, arch=arch, class_names=split.class_names)
    require_matching_classes(ckpt.config, split.class_names, f"data {data_dir}")
    data = task.make_eval_set(split, ckpt.config.preprocess)
    if ckpt.is_onnx:  # an ONNX model from elsewhere: ONNX Runtime (CPU, FP32) is its reference
        from edgeres.models.onnx_source import onnx_predict_fn

        predict = onnx_predict_fn(ckpt.onnx_path)
    else:
        predict = torch_predict_fn(ckpt.build_model())
    metrics = score(task, predict, data, batch_size, progress=progress)
    metrics["model"] = str(ckpt_path)
    return metrics


def evaluate_engine(target, data_dir, batch_size: int = 32, threads: int | None = None,
                    progress: bool = False) -> dict:
    """Metrics of a built engine of any task on a data split (classes checked against the manifest)."""
    from edgeres.engine import open_engine

    engine = open_engine(target, threads=threads)
    return evaluate_open_engine(engine, data_dir, batch_size, progress)


def evaluate_open_engine(engine, data_dir, batch_size: int = 32, progress: bool = False) -> dict:
    """Metrics of an opened engine (see ``edgeres.engine.open_engine``) on a data split."""
    from edgeres.models.checkpoint import require_matching_classes
    from edgeres.tasks import get_task

    task = get_task(engine.task)
    split = task.load_eval_split(Path(data_dir))
    require_matching_classes(engine.model_config, split.class_names, f"data {data_dir}")
    batch_size = min(batch_size, engine.manifest["input"].get("max_batch") or batch_size)
    data = task.make_eval_set(split, engine.preprocess)
    with engine:
        metrics = score(task, engine_predict_fn(engine), data, batch_size, progress=progress)
    metrics["model"] = str(engine.engine_file)
    return metrics

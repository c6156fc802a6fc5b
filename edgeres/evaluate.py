"""Classification evaluation shared by ``train``, ``eval``, engines and reports.

Any predictor works: a function from a float32 NCHW batch to logits. The images go through the same
numpy/OpenCV pre-processing that every engine uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from edgeres.config import PreprocessConfig
from edgeres.data.imagefolder import ImageList
from edgeres.processing import preprocess, resize_uint8

PredictFn = Callable[[np.ndarray], np.ndarray]

CACHE_LIMIT_BYTES = 1 << 30  # resized uint8 images kept in memory below this size


class EvalImages:
    """An image list resized once to network size (kept in memory when small) and served in batches."""

    def __init__(self, images: ImageList, cfg: PreprocessConfig):
        self.images = images
        self.cfg = cfg
        h, w = cfg.input_size
        self._cache = None
        if len(images) * h * w * 3 <= CACHE_LIMIT_BYTES:
            self._cache = np.stack([resize_uint8(img, cfg) for img in images.load_images()])

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> np.ndarray:
        return self.images.labels

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Float32 NCHW batches in order."""
        from edgeres.processing import finish_batch, read_image

        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            if self._cache is not None:
                yield finish_batch(self._cache[start:stop], self.cfg)
            else:
                yield preprocess([read_image(p) for p in self.images.paths[start:stop]], self.cfg)


def predict_logits(predict: PredictFn, data: EvalImages, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Run ``predict`` over every image and return the (N, C) logits."""
    from edgeres.progress import progress_bar

    out = []
    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("evaluating", total=len(data))
        for batch in data.batches(batch_size):
            out.append(np.asarray(predict(batch), dtype=np.float32))
            bar.advance(task, len(batch))
    return np.concatenate(out) if out else np.zeros((0, len(data.images.class_names)), np.float32)


def classification_metrics(labels: np.ndarray, logits: np.ndarray, class_names: list[str]) -> dict:
    """Top-1, top-5, per-class accuracy and the confusion matrix (rows: true, columns: predicted).

    Returns:
        A JSON-able dict; accuracies are percentages.
    """
    n, c = logits.shape
    pred = logits.argmax(axis=1)
    k = min(5, c)
    top5 = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    confusion = np.zeros((c, c), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {}
    for i, name in enumerate(class_names):
        total = int(confusion[i].sum())
        per_class[name] = {"images": total, "top1": 100.0 * confusion[i, i] / total if total else None}
    return {
        "images": int(n),
        "top1": 100.0 * float((pred == labels).mean()) if n else 0.0,
        "top5": 100.0 * float((top5 == labels[:, None]).any(axis=1).mean()) if n else 0.0,
        "top5_k": k,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "class_names": list(class_names),
    }


def torch_predict_fn(model, device: str = "cpu") -> PredictFn:
    """Wrap a torch classifier as a numpy predictor (eval mode, no grad)."""
    import torch

    model = model.to(device).eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return predict


def evaluate_checkpoint(ckpt_path, data_dir, batch_size: int = 64, arch: str | None = None,
                        progress: bool = False) -> dict:
    """Load a checkpoint, check its classes against the data folder and return its metrics."""
    from edgeres.data.imagefolder import load_eval_split
    from edgeres.models.checkpoint import checkpoint_task, load_checkpoint, require_matching_classes

    if checkpoint_task(ckpt_path) == "detect":
        from edgeres.evaluate_detect import evaluate_detector_checkpoint

        return evaluate_detector_checkpoint(ckpt_path, data_dir, batch_size, progress=progress)
    images = load_eval_split(data_dir)
    ckpt = load_checkpoint(ckpt_path, arch=arch, class_names=images.class_names)
    require_matching_classes(ckpt.config, images.class_names, f"data folder {data_dir}")
    data = EvalImages(images, ckpt.config.preprocess)
    if ckpt.is_onnx:  # an ONNX model from elsewhere: ONNX Runtime (CPU, FP32) is its reference
        from edgeres.models.onnx_source import onnx_predict_fn

        predict = onnx_predict_fn(ckpt.onnx_path)
    else:
        predict = torch_predict_fn(ckpt.build_model())
    logits = predict_logits(predict, data, batch_size, progress=progress)
    metrics = classification_metrics(data.labels, logits, images.class_names)
    metrics["model"] = str(ckpt_path)
    metrics["predictions"] = logits.argmax(1).tolist()
    return metrics


def evaluate_engine(target, data_dir, batch_size: int = 32, threads: int | None = None,
                    progress: bool = False) -> dict:
    """Metrics of a built engine on a data folder (classes checked against the manifest)."""
    from edgeres.data.imagefolder import load_eval_split
    from edgeres.engine import open_engine
    from edgeres.errors import EdgeresError
    from edgeres.models.checkpoint import require_matching_classes

    engine = open_engine(target, threads=threads)
    if engine.task == "detect":
        from edgeres.evaluate_detect import evaluate_detector_engine

        return evaluate_detector_engine(engine, data_dir, batch_size, progress=progress)
    if engine.task != "classify":
        raise EdgeresError(f"{engine.engine_file} is a '{engine.task}' engine; eval knows classify and detect")
    images = load_eval_split(data_dir)
    require_matching_classes(engine.model_config, images.class_names, f"data folder {data_dir}")
    batch_size = min(batch_size, engine.manifest["input"].get("max_batch") or batch_size)
    data = EvalImages(images, engine.preprocess)
    with engine:
        logits = predict_logits(lambda x: next(iter(engine.runner.infer(x).values())), data, batch_size,
                                progress=progress)
    metrics = classification_metrics(data.labels, logits, images.class_names)
    metrics["model"] = str(engine.engine_file)
    metrics["predictions"] = logits.argmax(1).tolist()
    return metrics

"""Detection evaluation shared by ``train --task detect``, ``eval``, engines and reports.

Any predictor works: a function from a network input batch to the raw ``[N, C + 4, h, w]`` maps. Images go
through the same numpy/OpenCV pre-processing as every engine, and the same numpy decoder and NMS as the
camera loop; mAP comes from pycocotools (the official COCO evaluator).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from edgeres.config import PreprocessConfig
from edgeres.errors import EdgeresError

PredictFn = Callable[[np.ndarray], np.ndarray]

EVAL_SCORE_THRESHOLD = 0.05  # mAP needs the low-score tail of the precision-recall curve
EVAL_MAX_DETECTIONS = 100  # COCO's own cap per image
DEFAULT_SCORE_THRESHOLD = 0.3  # what predict and the camera loop show
DEFAULT_NMS_IOU = 0.5


class DetectionImages:
    """A detection split resized once to network size and served in batches, with each original size."""

    def __init__(self, dataset, cfg: PreprocessConfig):
        from edgeres.processing import read_image, resize_uint8

        self.dataset = dataset
        self.cfg = cfg
        self.image_hws: list[tuple[int, int]] = []
        resized = []
        for sample in dataset.samples:
            img = read_image(sample.path)
            self.image_hws.append(img.shape[:2])
            resized.append(resize_uint8(img, cfg))
        h, w = cfg.input_size
        self._cache = np.stack(resized) if resized else np.zeros((0, h, w, 3), np.uint8)

    def __len__(self) -> int:
        return len(self.image_hws)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, list[tuple[int, int]]]]:
        """(network input batch, original (h, w) of each image) in order."""
        from edgeres.processing import finish_batch

        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            yield finish_batch(self._cache[start:stop], self.cfg), self.image_hws[start:stop]


EVAL_SETTINGS = {"score_threshold": EVAL_SCORE_THRESHOLD, "nms_iou": DEFAULT_NMS_IOU,
                 "max_detections": EVAL_MAX_DETECTIONS}


def decode_maps(maps: np.ndarray, num_classes: int, input_hw: tuple[int, int], image_hws: list[tuple[int, int]],
                settings: dict) -> list:
    """The network's maps -> boxes in original-image pixels, with a manifest-style settings dict (score_threshold,
    nms_iou, max_detections): the one decoding call behind eval, predict, bench and the camera loop."""
    from edgeres.tasks.detect.decode import decode_centernet

    return decode_centernet(np.asarray(maps, np.float32), num_classes, input_hw, image_hws,
                            score_threshold=settings["score_threshold"], nms_iou=settings["nms_iou"],
                            max_detections=settings.get("max_detections", EVAL_MAX_DETECTIONS))


def predict_detections(predict: PredictFn, data: DetectionImages, num_classes: int, batch_size: int = 32,
                       progress: bool = False) -> list:
    """Run ``predict`` over every image and decode its maps (mAP settings) into boxes in original-image pixels."""
    from edgeres.progress import progress_bar

    out = []
    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("evaluating", total=len(data))
        for batch, hws in data.batches(batch_size):
            out += decode_maps(predict(batch), num_classes, data.cfg.input_size, hws, EVAL_SETTINGS)
            bar.advance(task, len(hws))
    return out


def evaluate_detections(predict: PredictFn, data: DetectionImages, class_names: list[str], batch_size: int = 32,
                        progress: bool = False) -> dict:
    """mAP@0.5, mAP@0.5:0.95 and per-class AP of a predictor on a detection split."""
    from edgeres.tasks.detect.metrics import coco_map

    detections = predict_detections(predict, data, len(class_names), batch_size, progress=progress)
    metrics = coco_map(data.dataset.samples, detections, class_names)
    metrics["class_names"] = list(class_names)
    metrics["task"] = "detect"
    metrics["detections_per_image"] = [len(d) for d in detections]
    return metrics


def load_eval_split(path: Path):
    """A detection split to evaluate on: ``path`` itself, or its ``val/`` when it holds train/ and val/."""
    from edgeres.data.detection import load_detection_split

    path = Path(path)
    if (path / "val").is_dir():
        path = path / "val"
    return load_detection_split(path)


def require_matching_names(model_names: list[str], data_names: list[str], what: str) -> None:
    if list(model_names) != list(data_names):
        raise EdgeresError(f"{what} has classes {data_names[:6]} ({len(data_names)}) but the model detects "
                           f"{model_names[:6]} ({len(model_names)})")


def evaluate_detector_checkpoint(ckpt_path, data_dir, batch_size: int = 32, progress: bool = False) -> dict:
    """mAP of a detector checkpoint on a data split."""
    from edgeres.evaluate import torch_predict_fn
    from edgeres.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    dataset = load_eval_split(data_dir)
    require_matching_names(ckpt.config.class_names, dataset.class_names, f"data {data_dir}")
    data = DetectionImages(dataset, ckpt.config.preprocess)
    metrics = evaluate_detections(torch_predict_fn(ckpt.build_model()), data, dataset.class_names, batch_size,
                                  progress=progress)
    metrics["model"] = str(ckpt_path)
    return metrics


def evaluate_detector_engine(engine, data_dir, batch_size: int = 32, progress: bool = False) -> dict:
    """mAP of an opened detection engine (see ``edgeres.engine.open_engine``) on a data split."""
    dataset = load_eval_split(data_dir)
    require_matching_names(engine.class_names, dataset.class_names, f"data {data_dir}")
    batch_size = min(batch_size, engine.manifest["input"].get("max_batch") or batch_size)
    data = DetectionImages(dataset, engine.preprocess)
    with engine:
        metrics = evaluate_detections(lambda x: next(iter(engine.runner.infer(x).values())), data,
                                      dataset.class_names, batch_size, progress=progress)
    metrics["model"] = str(engine.engine_file)
    return metrics

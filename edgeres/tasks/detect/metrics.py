"""COCO mAP for detectors, computed by the official evaluator (pycocotools) on in-memory data.

Conventions are COCO's own: 101-point interpolated precision, area range "all", at most 100 detections per image
(more are ignored), a class with no ground truth box is left out of the mean (its false positives cost nothing),
and a detection matches the unmatched ground truth box it overlaps most, if that IoU reaches the threshold.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeres.errors import require
from edgeres.tasks.detect.decode import Detections


def coco_map(samples_gt: Sequence[Any], predictions: Sequence[Detections], class_names: Sequence[str]) -> dict:
    """COCO box mAP of predictions against ground truth.

    Args:
        samples_gt: one object per image with ``image_id`` (int, unique), ``width``, ``height``, ``boxes``
            ((n, 4) ``x0, y0, x1, y1`` pixels) and ``labels`` ((n,) class indices), e.g. the data layer's
            ``DetectionSample``. Images without objects are allowed (their detections are false positives).
        predictions: the ``Detections`` of each image, aligned with ``samples_gt``, in the same pixels.
        class_names: names of the classes, indexed by label.

    Returns:
        ``map`` (AP averaged over IoU 0.50:0.05:0.95), ``map50``, ``map75``; ``per_class_ap50`` {name: AP@0.5, or
        None for a class without ground truth boxes}; ``pr_curve50`` ({"recall": COCO's 101 recall points,
        "precision": the interpolated precision there at IoU 0.5, averaged over the classes with boxes}: its mean
        is ``map50``; None without ground truth); and the counts ``images``, ``gt_boxes``, ``detections``.
        With no ground truth box at all the three mAPs are None (undefined); with no detections they are 0.

    Raises:
        ValueError: predictions and samples are not aligned, image ids repeat, or a label has no class name.
    """
    coco_mod = require("pycocotools.coco", "desktop")
    cocoeval_mod = require("pycocotools.cocoeval", "desktop")
    if len(predictions) != len(samples_gt):
        raise ValueError(f"got {len(predictions)} predictions for {len(samples_gt)} images; expected one per image")
    image_ids = [int(s.image_id) for s in samples_gt]
    if len(set(image_ids)) != len(image_ids):
        raise ValueError("image_id values repeat in samples_gt; each image needs its own id")

    images = [
        {"id": i, "width": int(s.width), "height": int(s.height)} for i, s in zip(image_ids, samples_gt, strict=True)
    ]
    categories = [{"id": _category_id(k), "name": name} for k, name in enumerate(class_names)]
    gt_anns, dt_anns = [], []
    for image_id, sample, det in zip(image_ids, samples_gt, predictions, strict=True):
        gt_anns += _annotations(image_id, sample.boxes, sample.labels, None, len(class_names), len(gt_anns))
        dt_anns += _annotations(image_id, det.boxes, det.labels, det.scores, len(class_names), len(dt_anns))

    result = {
        "map": None,
        "map50": None,
        "map75": None,
        "per_class_ap50": dict.fromkeys(class_names),
        "pr_curve50": None,
        "images": len(images),
        "gt_boxes": len(gt_anns),
        "detections": len(dt_anns),
    }
    if not gt_anns:
        return result
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress; edgeres' stdout stays clean
        gt = _coco(coco_mod, images, categories, gt_anns)
        dt = _coco(coco_mod, images, categories, dt_anns)
        evaluator = cocoeval_mod.COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    result.update(map=float(stats[0]), map50=float(stats[1]), map75=float(stats[2]))

    # precision: [IoU threshold, recall threshold, class, area range, max detections]; -1 where a class has no GT.
    params = evaluator.params
    t50 = int(np.flatnonzero(np.isclose(params.iouThrs, 0.5))[0])
    precision = evaluator.eval["precision"][t50, :, :, params.areaRngLbl.index("all"), -1]
    for k, name in enumerate(class_names):
        column = precision[:, params.catIds.index(_category_id(k))]
        result["per_class_ap50"][name] = float(column.mean()) if (column > -1).any() else None
    with_boxes = precision[:, (precision > -1).any(axis=0)]  # -1: a class without ground truth boxes
    result["pr_curve50"] = {"recall": [round(float(r), 2) for r in params.recThrs],
                            "precision": [round(float(p), 6) for p in with_boxes.mean(axis=1)]}
    return result


def _category_id(label: int) -> int:
    return int(label) + 1  # COCO category ids start at 1


def _annotations(image_id, boxes, labels, scores, num_classes, first) -> list[dict]:
    """COCO annotation dicts (``bbox`` as x, y, w, h) for one image; ids continue from ``first`` and start at 1,
    because COCOeval treats a matched id of 0 as "no match"."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(f"label {int(bad[0])} in image {image_id} has no class name; {num_classes} classes given")
    anns = []
    for k, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        w, h = float(box[2] - box[0]), float(box[3] - box[1])
        ann = {
            "id": first + k + 1,
            "image_id": image_id,
            "category_id": _category_id(label),
            "bbox": [float(box[0]), float(box[1]), w, h],
            "area": w * h,
            "iscrowd": 0,
        }
        if scores is not None:
            ann["score"] = float(scores[k])
        anns.append(ann)
    return anns


def _coco(coco_mod, images, categories, annotations):
    """An in-memory COCO object; built by hand because ``COCO.loadRes`` rejects an empty detection list."""
    coco = coco_mod.COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    coco.createIndex()
    return coco


class DetectScorer:
    """Decodes each batch with mAP's settings (low score threshold, COCO's 100 per image), mAP at the end."""

    def __init__(self, data):
        self.data = data
        self.detections: list[Detections] = []

    def add(self, outputs: np.ndarray, image_hws) -> None:
        from edgeres.tasks.detect.outputs import EVAL_SETTINGS, decode

        self.detections += decode(outputs, image_hws, self.data.cfg.input_size, self.data.class_names, EVAL_SETTINGS)

    def result(self) -> dict:
        metrics = coco_map(self.data.dataset.samples, self.detections, self.data.class_names)
        metrics["class_names"] = list(self.data.class_names)
        metrics["task"] = "detect"
        metrics["detections_per_image"] = [len(d) for d in self.detections]
        return metrics


def summarize(metrics: dict) -> str:
    def fmt(value) -> str:  # None: no ground-truth box, so mAP is undefined
        return "-" if value is None else f"{value:.4f}"

    return (f"{metrics['images']} images, {metrics['gt_boxes']} boxes  mAP@0.5 {fmt(metrics['map50'])}  "
            f"mAP@0.5:0.95 {fmt(metrics['map'])}  mAP@0.75 {fmt(metrics['map75'])}")


def tables(metrics: dict) -> list:
    rows = [[name, "-" if metrics["per_class_ap50"].get(name) is None else f"{metrics['per_class_ap50'][name]:.4f}"]
            for name in metrics["class_names"]]
    return [("per class", ["class", "AP@0.5"], rows)]

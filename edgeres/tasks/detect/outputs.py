"""A detector's outputs for people and programs: decoding settings, boxes, their JSON form, drawing."""

from __future__ import annotations

import numpy as np

from edgeres.errors import EdgeresError

DEFAULT_SCORE_THRESHOLD = 0.3  # what predict and the camera loop show
DEFAULT_NMS_IOU = 0.5
EVAL_SCORE_THRESHOLD = 0.05  # mAP needs the low-score tail of the precision-recall curve
EVAL_MAX_DETECTIONS = 100  # COCO's own cap per image
EVAL_SETTINGS = {"score_threshold": EVAL_SCORE_THRESHOLD, "nms_iou": DEFAULT_NMS_IOU,
                 "max_detections": EVAL_MAX_DETECTIONS}
DEFAULT_SETTINGS = {"score_threshold": DEFAULT_SCORE_THRESHOLD, "nms_iou": DEFAULT_NMS_IOU}


def check_settings(settings: dict) -> dict:
    if not 0.0 <= settings["score_threshold"] <= 1.0 or not 0.0 < settings["nms_iou"] <= 1.0:
        raise EdgeresError(f"--score-threshold must be in [0, 1] and --nms-iou in (0, 1]; got "
                           f"{settings['score_threshold']} and {settings['nms_iou']}")
    return settings


def settings(manifest: dict, overrides: dict) -> dict:
    """A detect engine's decoding settings: the manifest's, overridden where asked (``score_threshold``,
    ``nms_iou``). A manifest without a ``detection`` block (no engine, e.g. a checkpoint) gets the defaults."""
    if manifest and "detection" not in manifest:
        raise EdgeresError("the engine manifest has no 'detection' block; rebuild the engine with this edgeres")
    found = dict((manifest or {}).get("detection") or DEFAULT_SETTINGS)
    for key in ("score_threshold", "nms_iou"):
        if overrides.get(key) is not None:
            found[key] = overrides[key]
    return check_settings(found)


def manifest_block(settings: dict) -> dict:
    """How a detector's output is decoded, recorded so every consumer decodes it the same way."""
    merged = check_settings({**DEFAULT_SETTINGS, **{k: v for k, v in settings.items() if v is not None}})
    return {"detection": {"decoder": "centernet", "stride": 4, "score_threshold": merged["score_threshold"],
                          "nms_iou": merged["nms_iou"], "max_detections": EVAL_MAX_DETECTIONS}}


def decode(outputs: np.ndarray, image_hws, input_hw, class_names: list[str], settings: dict) -> list:
    """The network's maps -> ``Detections`` in original-image pixels: the one decoder behind eval, predict, bench
    and the camera loop."""
    from edgeres.tasks.detect.decode import decode_centernet

    return decode_centernet(np.asarray(outputs, np.float32), len(class_names), tuple(input_hw), list(image_hws),
                            score_threshold=settings["score_threshold"], nms_iou=settings["nms_iou"],
                            max_detections=settings.get("max_detections", EVAL_MAX_DETECTIONS))


def to_json(det, class_names: list[str]) -> list[dict]:
    return [{"label": class_names[int(c)], "index": int(c), "score": round(float(s), 4),
             "box": [round(float(v), 2) for v in b]}
            for b, s, c in zip(det.boxes, det.scores, det.labels, strict=True)]


def draw(image: np.ndarray, det, class_names: list[str], settings: dict) -> np.ndarray:
    """Each box in its class's colour with "name 0.87" above it, drawn on ``image`` in place."""
    from edgeres.tasks.detect.draw import draw_detections

    image[...] = draw_detections(image, det, class_names)
    return image

"""How a CenterNet detector is deployed: nvinfer has no parser for its maps, so nvinfer hands the raw maps to the
DeepStream app's probe (``network-type=100``), and Triton gets a Python post-processing model and an ensemble;
both decode with edgeres's numpy decoder and the manifest's ``detection`` settings."""

from __future__ import annotations

from edgeres.tasks.base import DeployFacts, TritonPostprocess
from edgeres.tasks.detect.outputs import EVAL_MAX_DETECTIONS

NVINFER_RAW_TENSORS = 100  # Gst-nvinfer network-type "other": output-tensor-meta for the app to decode
STRIDE = 4  # CenterNet's output stride


def output_shape(num_classes: int, input_hw: tuple[int, int]) -> tuple[int, ...]:
    """One image's maps: heatmap logits per class, box size (2) and centre offset (2) at stride 4."""
    h, w = input_hw
    return (num_classes + 4, h // STRIDE, w // STRIDE)


def _max_detections(settings: dict) -> int:
    return int(settings.get("max_detections", EVAL_MAX_DETECTIONS))


def triton_outputs(settings: dict) -> list[tuple[str, str, list[int]]]:
    """Fixed-size detections, padded after ``num_detections`` to the manifest's ``max_detections``."""
    k = _max_detections(settings)
    return [
        ("num_detections", "TYPE_INT32", [1]),
        ("boxes", "TYPE_FP32", [k, 4]),  # x0, y0, x1, y1 in original-image pixels
        ("scores", "TYPE_FP32", [k]),
        ("labels", "TYPE_INT32", [k]),
    ]


def triton_parameters(settings: dict) -> dict:
    return {
        "score_threshold": settings["score_threshold"],
        "nms_iou": settings["nms_iou"],
        "max_detections": _max_detections(settings),
    }


DEPLOY = DeployFacts(
    nvinfer_network_type=NVINFER_RAW_TENSORS,
    append_softmax=False,
    label_separator="\n",
    decoder="centernet",
    attach="objects",  # NvDsObjectMeta: nvdsosd draws them, trackers and analytics after it see them
    settings_block="detection",
    output_shape=output_shape,
    label_filename=False,
    triton_postprocess=TritonPostprocess(outputs=triton_outputs, parameters=triton_parameters),
)

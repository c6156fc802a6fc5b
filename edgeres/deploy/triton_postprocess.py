"""Triton Python-backend model written by ``edgeres deploy triton``: raw engine output -> what a client wants.

Copied into ``REPO/<name>_postprocess/1/model.py``. It decodes with edgeres's own numpy decoder (the code every
edgeres backend and the camera loop use), so Triton's Python backend needs edgeres importable: install it into
the server's Python (``pip install edgeres``: the decoder needs only numpy) or point the model at a packed
environment (``EXECUTION_ENV_PATH``). Settings come from the model's ``parameters`` in ``config.pbtxt``; its
``decoder`` parameter picks the function in ``DECODERS`` (a new task adds one entry).

Inputs per request: the engine output named by ``maps_name`` and ``image_hw`` ``[N, 2]`` (each image's original
height and width). ``centernet``: the maps ``[N, C + 4, h, w]`` in; out ``num_detections`` ``[N, 1]``, ``boxes``
``[N, K, 4]`` (x0, y0, x1, y1 in original-image pixels), ``scores`` ``[N, K]``, ``labels`` ``[N, K]`` (class
indices; ``labels.txt`` beside the config names them), padded with zeros after ``num_detections``.
"""

from __future__ import annotations

import json

import numpy as np


def _pb_utils():
    """Triton's utility module (exists only inside the Python backend's stub process)."""
    import triton_python_backend_utils

    return triton_python_backend_utils


def pad_detections(dets, k: int) -> dict[str, np.ndarray]:
    """One batch of ``Detections`` as the four fixed-size output arrays."""
    n = len(dets)
    out = {
        "num_detections": np.zeros((n, 1), np.int32),
        "boxes": np.zeros((n, k, 4), np.float32),
        "scores": np.zeros((n, k), np.float32),
        "labels": np.zeros((n, k), np.int32),
    }
    for i, det in enumerate(dets):
        m = min(len(det), k)
        out["num_detections"][i, 0] = m
        out["boxes"][i, :m] = det.boxes[:m]
        out["scores"][i, :m] = det.scores[:m]
        out["labels"][i, :m] = det.labels[:m]
    return out


def centernet(params: dict, maps: np.ndarray, image_hws: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """CenterNet maps -> padded detections in original-image pixels (edgeres's own decoder)."""
    from edgeres.tasks.detect.decode import decode_centernet

    max_detections = int(params["max_detections"])
    dets = decode_centernet(
        np.asarray(maps, np.float32),
        int(params["num_classes"]),
        (int(params["input_h"]), int(params["input_w"])),
        image_hws,
        score_threshold=float(params["score_threshold"]),
        nms_iou=float(params["nms_iou"]),
        max_detections=max_detections,
    )
    return pad_detections(dets, max_detections)


DECODERS = {"centernet": centernet}  # the config's "decoder" parameter -> function


class TritonPythonModel:
    """Triton's Python-backend interface: ``initialize`` once, ``execute`` per batch of requests."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        name = self.params.get("decoder")
        if name not in DECODERS:  # a config from another edgeres: fail at load time, not per request
            raise ValueError(f"decoder parameter '{name}' is not one of this model's: {', '.join(DECODERS)}")
        self.decoder = DECODERS[name]
        self.maps_name = self.params.get("maps_name", "maps")

    def execute(self, requests: list) -> list:
        pb = _pb_utils()
        responses = []
        for request in requests:
            try:
                maps = pb.get_input_tensor_by_name(request, self.maps_name).as_numpy()
                image_hw = pb.get_input_tensor_by_name(request, "image_hw").as_numpy().reshape(-1, 2)
                if len(image_hw) != len(maps):
                    raise ValueError(f"image_hw has {len(image_hw)} rows for a batch of {len(maps)} images")
                arrays = self.decoder(self.params, maps, [(int(h), int(w)) for h, w in image_hw])
                responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor(k, v) for k, v in arrays.items()]))
            except ValueError as exc:  # a malformed request fails alone, with the decoder's message
                responses.append(pb.InferenceResponse(output_tensors=[], error=pb.TritonError(str(exc))))
        return responses

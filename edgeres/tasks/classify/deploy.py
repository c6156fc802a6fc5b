"""How a classifier is deployed: nvinfer parses it itself (after a Softmax), Triton serves its logits as they are."""

from __future__ import annotations

from edgeres.tasks.base import DeployFacts

NVINFER_CLASSIFIER = 1  # Gst-nvinfer network-type: classifier metadata with classifier-threshold


def output_shape(num_classes: int, input_hw: tuple[int, int]) -> tuple[int, ...]:
    """One image's logits."""
    return (num_classes,)


DEPLOY = DeployFacts(
    nvinfer_network_type=NVINFER_CLASSIFIER,
    append_softmax=True,  # nvinfer's classifier-threshold compares probabilities; the network gives logits
    label_separator=";",  # nvinfer's classifier label file: one line of labels per output layer
    decoder="softmax",  # the deployed ONNX already ends in Softmax: the app takes the top classes
    attach="frame_label",
    settings_block=None,
    output_shape=output_shape,
    label_filename=True,  # clients ask Triton's classification extension for the top k labels
)

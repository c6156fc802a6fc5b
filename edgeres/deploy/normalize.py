"""Pre-processing as DeepStream's nvinfer applies it, and the ONNX change that makes it exact.

nvinfer computes ``y = net-scale-factor * (x - offsets[c])`` on 0-255 pixels: one scalar scale, per-channel
offsets. edgeres normalizes ``(x / 255 - mean[c]) / std[c]``. With one std for all channels the two agree
exactly (``net-scale-factor = 1 / (255 * std)``, ``offsets = 255 * mean``). With a per-channel std they
cannot, and averaging the stds (the usual hand translation) shifts every input by up to several percent.
Instead nvinfer is given ``net-scale-factor = 1/255`` and ``offsets = 255 * mean`` (so the network receives
``x / 255 - mean``) and the ``1 / std[c]`` moves into the network:

* FP32 / FP16 ONNX: folded into the first convolution's weights, ``W[:, c] /= std[c]``. Exact: the conv is
  linear in its input and its zero padding stays zero (a zero-mean input is zero before and after).
* INT8 (the Q/DQ artifact, or the FP32 ONNX with a calibration cache): a per-channel ``Mul`` before the
  input's quantizer. Folding into the weights would move the first conv's per-channel weight scales and its
  calibrated input range; the Mul keeps every calibrated value as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeres.config import PreprocessConfig
from edgeres.errors import EdgeresError

STD_INPUT_SUFFIX = "_std"  # the Mul's output name: <input>_std


@dataclass(frozen=True)
class NvinferScaling:
    """What nvinfer is told and what the ONNX must absorb.

    Attributes:
        net_scale_factor: nvinfer's scalar multiplier.
        offsets: per-channel values subtracted from 0-255 pixels, in the model's channel order.
        inv_std: the per-channel factors moved into the network (None when the stds are equal).
    """

    net_scale_factor: float
    offsets: tuple[float, float, float]
    inv_std: tuple[float, float, float] | None

    @property
    def how(self) -> str:
        """One sentence for the user on how 1/std was handled."""
        if self.inv_std is None:
            return "one std for all channels: net-scale-factor carries 1/(255*std) exactly"
        return "per-channel std: net-scale-factor is 1/255 and 1/std per channel is inside the ONNX (exact)"


def nvinfer_scaling(pre: PreprocessConfig) -> NvinferScaling:
    """nvinfer's scale and offsets for a model's pre-processing (see the module docstring)."""
    if pre.normalize_in_network:
        raise EdgeresError(
            "this engine takes uint8 NHWC input and normalizes inside the network; nvinfer feeds "
            "float NCHW: build the engine without --uint8-input for DeepStream"
        )
    mean = np.asarray(pre.mean, np.float64)
    std = np.asarray(pre.std, np.float64)
    if np.any(std <= 0):
        raise EdgeresError(f"the manifest's std {list(pre.std)} must be positive")
    offsets = tuple(float(v) for v in 255.0 * mean)
    if np.all(std == std[0]):
        return NvinferScaling(float(1.0 / (255.0 * std[0])), offsets, None)
    return NvinferScaling(1.0 / 255.0, offsets, tuple(float(v) for v in 1.0 / std))


def nvinfer_input(pixels_rgb: np.ndarray, scaling: NvinferScaling) -> np.ndarray:
    """What nvinfer feeds the network for ``[N, H, W, 3]`` uint8 pixels already resized and in the model's
    channel order: ``net-scale-factor * (x - offsets)``, NCHW float32. Tests use it to check the ONNX written
    for nvinfer against the engine on real images."""
    x = pixels_rgb.astype(np.float32)
    y = np.float32(scaling.net_scale_factor) * (x - np.asarray(scaling.offsets, np.float32))
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def fold_inv_std_into_first_conv(model, inv_std: tuple[float, float, float]):
    """Scale the input channels of the (only) Conv reading the graph input by ``inv_std``; in place, returned.

    Raises:
        EdgeresError: the graph input does not feed exactly one Conv whose weights are an initializer.
    """
    from onnx import numpy_helper

    graph = model.graph
    name = graph.input[0].name
    readers = [n for n in graph.node if name in n.input]
    if len(readers) != 1 or readers[0].op_type != "Conv" or readers[0].input[0] != name:
        found = ", ".join(n.op_type for n in readers) or "nothing"
        raise EdgeresError(
            f"cannot fold 1/std into the first convolution: the input '{name}' feeds {found}, not one Conv"
        )
    weights = {t.name: t for t in graph.initializer}
    w_name = readers[0].input[1]
    if w_name not in weights:
        raise EdgeresError(f"cannot fold 1/std: the first Conv's weights '{w_name}' are not a constant")
    w = numpy_helper.to_array(weights[w_name])
    if w.shape[1] != len(inv_std):
        raise EdgeresError(f"the first Conv has {w.shape[1]} input channels, the pre-processing {len(inv_std)}")
    folded = (w.astype(np.float64) * np.asarray(inv_std, np.float64)[None, :, None, None]).astype(w.dtype)
    weights[w_name].CopyFrom(numpy_helper.from_array(folded, w_name))
    return model


def insert_inv_std_mul(model, inv_std: tuple[float, float, float]):
    """Put ``Mul(input, inv_std[c])`` between the graph input and everything that read it; in place, returned.

    The Mul's output is named ``<input>_std``: a calibration cache written for this graph moves the input's
    range to that name (``cache_scales_for_mul``).
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    name = graph.input[0].name
    out = name + STD_INPUT_SUFFIX
    for node in graph.node:
        for i, value in enumerate(node.input):
            if value == name:
                node.input[i] = out
    factor = numpy_helper.from_array(np.asarray(inv_std, np.float32).reshape(1, len(inv_std), 1, 1), name + "_inv_std")
    graph.initializer.append(factor)
    graph.node.insert(0, helper.make_node("Mul", [name, factor.name], [out], name=name + "_inv_std_mul"))
    return model


def input_range(pre: PreprocessConfig) -> float:
    """The largest |x/255 - mean| a 0-255 pixel can give: the exact range of the Mul's input."""
    mean = np.asarray(pre.mean, np.float64)
    return float(np.max(np.maximum(mean, 1.0 - mean)))

"""Walks a Q/DQ ONNX model and reports every TensorRT explicit-quantization rule it breaks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeres.onnx_model.graph import WEIGHTED_OPS, initializers, producers, weight_axis


@dataclass(frozen=True)
class Violation:
    rule: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.node}: {self.message}"


RULES = {
    "int8": "Q/DQ zero points are int8 (TensorRT has no uint8 quantization)",
    "symmetric": "zero points are all 0 (symmetric quantization)",
    "positive-scale": "scales are finite and > 0",
    "weight-per-channel": "weights are quantized per channel on the op's output-channel axis",
    "activation-per-tensor": "activations are quantized per tensor",
    "weighted-op-quantized": "every Conv/ConvTranspose/Gemm reads a dequantized activation and weight",
    "q-dq-pair": "every QuantizeLinear feeds DequantizeLinear nodes with the same scale and zero point",
    "residual-add": "residual Adds take at least one dequantized input, so TensorRT can fuse them",
}


def check_qdq_model(model, float_layers: set[str] | frozenset[str] = frozenset()) -> list[Violation]:
    """Every rule ``model`` (an onnx.ModelProto) breaks; empty when TensorRT can build it as intended.

    Args:
        model: the Q/DQ model.
        float_layers: Conv/Gemm nodes deliberately left unquantized (``mixed`` precision): not reported.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = initializers(graph)
    made_by = producers(graph)
    values = {name: numpy_helper.to_array(t) for name, t in inits.items()}
    out: list[Violation] = []
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for node in qdq:
        scale = values.get(node.input[1])
        zp = values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is None or zp.dtype != np.int8:
            out.append(Violation("int8", node.name, f"zero point type is {None if zp is None else zp.dtype}, not int8"))
        elif np.any(zp != 0):
            out.append(Violation("symmetric", node.name, "zero point is not 0"))
        if scale is None or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            out.append(Violation("positive-scale", node.name, "scale is missing, non-finite or not positive"))
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            readers = [n for n in graph.node if node.output[0] in n.input]
            for r in readers:
                if r.op_type != "DequantizeLinear" or list(r.input[1:]) != list(node.input[1:]):
                    out.append(Violation("q-dq-pair", node.name, f"feeds {r.op_type} {r.name} without a matching DQ"))
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS or node.name in float_layers:
            continue
        act = made_by.get(node.input[0])
        if act is None or act.op_type != "DequantizeLinear":
            out.append(Violation("weighted-op-quantized", node.name, "activation input is not dequantized"))
        elif values.get(act.input[1]) is not None and values[act.input[1]].size != 1:
            out.append(Violation("activation-per-tensor", act.name, "activation scale is not a scalar"))
        wdq = made_by.get(node.input[1])
        if wdq is None or wdq.op_type != "DequantizeLinear":
            out.append(Violation("weighted-op-quantized", node.name, "weight input is not dequantized"))
            continue
        axis = next((a.i for a in wdq.attribute if a.name == "axis"), 1)
        want = weight_axis(node)
        scale = values.get(wdq.input[1])
        weight = _weight_value(wdq, made_by, values)
        channels = weight.shape[want] if weight is not None else None
        if scale is None or scale.ndim != 1 or axis != want or (channels is not None and scale.size != channels):
            out.append(Violation("weight-per-channel", wdq.name,
                                 f"weight scale shape {None if scale is None else scale.shape} on axis {axis}; "
                                 f"expected {channels} scales on axis {want} for {node.op_type}"))
    for node in graph.node:
        residual = node.op_type == "Add" and len(node.input) == 2 and not any(i in inits for i in node.input)
        if residual and not any(made_by.get(i) is not None and made_by[i].op_type == "DequantizeLinear"
                                for i in node.input):
            out.append(Violation("residual-add", node.name, "no input is dequantized"))
    return out


def _weight_value(dq, made_by, values):
    """The weight tensor behind a DQ (int8 initializer, or float initializer behind a Q)."""
    src = dq.input[0]
    if src in values:
        return values[src]
    q = made_by.get(src)
    if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in values:
        return values[q.input[0]]
    return None

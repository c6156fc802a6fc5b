"""Which tensors of an ONNX graph can never be negative, and what that means for the int8 weights that read them.

ResNet's convolutions almost all read a ReLU's output (0..127 in TensorRT's int8). The few that read a signed tensor
(the stem reading the normalized image; a detector's or segmenter's neck reading a sum of branches) read int8 values
that x86 CPUs without VNNI can only multiply as uint8 + 128 (0..255), two products at a time into a saturating int16
(``vpmaddubsw``). With weights of up to 127 a pair reaches 2 x 255 x 127 = 64770 and saturates. Quantizing those
weights to 64 steps per side instead (scale = amax / 64) bounds every pair by 2 x 255 x 64 = 32640 < 32767: the fast
kernels are then exact without splitting the input, on every CPU, and TensorRT runs the same integers. NNCF does the
same for the first layer ("overflow fix"); here it applies to every weighted op that reads a signed tensor. The
accuracy cost was measured (docs/calibrate.md); a Q/DQ model made elsewhere keeps its weights, and the CPU engines
split such inputs where the weights need it (``quant.cpu``).
"""

from __future__ import annotations

from edgeres.onnx_model.graph import WEIGHTED_OPS, initializers, producers
from edgeres.quant.scales import QMAX  # int8 weights of an op whose input is never negative: -127..127

# Ops whose output never exceeds the largest input value nor goes below the smallest (the first input's
# value range carries through them).
ORDER_KEEPING_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape",
                     "Identity", "Squeeze", "Unsqueeze", "Transpose")
QMAX_SIGNED_INPUT = 64  # int8 weights of an op that reads a signed tensor: -64..64 (the module doc)


def nonnegative_tensors(graph) -> set[str]:
    """Float tensors that can never hold a negative value: ReLU outputs, what pooling, reshaping or
    concatenation make of them, and the dequantized values of their quantizers."""
    from onnx import numpy_helper

    made_by, inits = producers(graph), initializers(graph)
    memo: dict[str, bool] = {}

    def nonnegative(tensor: str) -> bool:
        if tensor in memo:
            return memo[tensor]
        memo[tensor] = False  # cycles cannot occur in ONNX; this only stops a malformed graph from recursing
        node = made_by.get(tensor)
        if node is None:
            result = False
        elif node.op_type == "Relu":
            result = True
        elif node.op_type == "Clip":  # Clip(x, min >= 0, ...)
            low = inits.get(node.input[1]) if len(node.input) > 1 else None
            result = low is not None and float(numpy_helper.to_array(low)) >= 0
        elif node.op_type in ORDER_KEEPING_OPS:
            result = nonnegative(node.input[0])
        elif node.op_type == "Concat":
            result = all(nonnegative(i) for i in node.input)
        elif node.op_type == "DequantizeLinear":
            q = made_by.get(node.input[0])
            result = q is not None and q.op_type == "QuantizeLinear" and nonnegative(q.input[0])
        else:
            result = False
        memo[tensor] = result
        return result

    return {t for node in graph.node for t in node.output if nonnegative(t)}


def weight_qmax(graph) -> dict[str, int]:
    """The largest int8 magnitude of each weight of the graph's Conv/ConvTranspose/Gemm nodes: ``QMAX_SIGNED_INPUT``
    where any op reading the weight reads an activation that can be negative, ``QMAX`` elsewhere."""
    inits = initializers(graph)
    nonnegative = nonnegative_tensors(graph)
    qmax: dict[str, int] = {}
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2 or node.input[1] not in inits:
            continue
        signed = node.input[0] not in nonnegative
        qmax[node.input[1]] = min(qmax.get(node.input[1], QMAX), QMAX_SIGNED_INPUT if signed else QMAX)
    return qmax

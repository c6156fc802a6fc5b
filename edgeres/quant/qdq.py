"""The one Q/DQ writer: FP32 ONNX + scales JSON -> explicit-quantization ONNX in TensorRT's form.

int8, symmetric (zero point 0, scale = amax / 127), per-tensor activations, per-channel weights on
the output-channel axis of the consuming op (scale = amax / 127, or amax / 64 for an op reading a signed tensor:
``quant.signs``). Weights stay float behind a QuantizeLinear ->
DequantizeLinear pair (the form TensorRT 8.6, 10 and 11 all accept). Calibration and QAT both end here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.onnx_model.graph import WEIGHTED_OPS, consumers, topological_sort
from edgeres.quant.points import find_points
from edgeres.quant.scales import QMAX, Scales
from edgeres.quant.signs import QMAX_SIGNED_INPUT


def _qdq_nodes(tensor: str, scale: np.ndarray, zero_point: np.ndarray, axis: int | None, suffix: str = ""):
    """Q and DQ nodes plus their scale/zero-point initializers for ``tensor``; returns (nodes, inits, dq_output)."""
    from onnx import helper, numpy_helper

    base = tensor + suffix
    s_name, z_name = f"{base}_scale", f"{base}_zero_point"
    attrs = {"axis": axis} if axis is not None else {}
    q = helper.make_node("QuantizeLinear", [tensor, s_name, z_name], [f"{base}_quantized"],
                         name=f"{base}_QuantizeLinear", **attrs)
    dq = helper.make_node("DequantizeLinear", [f"{base}_quantized", s_name, z_name], [f"{base}_dequantized"],
                          name=f"{base}_DequantizeLinear", **attrs)
    inits = [numpy_helper.from_array(np.asarray(scale, dtype=np.float32), s_name),
             numpy_helper.from_array(zero_point, z_name)]
    return [q, dq], inits, f"{base}_dequantized"


def activation_scale(scales: Scales, tensor: str) -> np.ndarray:
    if tensor not in scales.activations:
        raise EdgeresError(f"the scales have no range for tensor '{tensor}': they belong to another model export")
    return np.float32(scales.activations[tensor]["amax"] / QMAX)


def write_qdq(fp32_model, scales: Scales, float_layers: set[str] | frozenset[str] = frozenset(),
              signed_input_qmax: int = QMAX_SIGNED_INPUT):
    """Insert TensorRT-style Q/DQ into a copy of ``fp32_model`` (an onnx.ModelProto) and return it.

    Args:
        fp32_model: the FP32 export the scales are keyed to.
        scales: the scales JSON.
        float_layers: names of Conv/Gemm nodes to leave unquantized (``mixed`` precision).
        signed_input_qmax: the largest int8 weight of an op reading a signed tensor (``quant.signs``; 127 makes the
            form without that bound, for measuring what it costs).
    """
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(fp32_model)
    graph = model.graph
    points = find_points(model)
    readers = consumers(graph)
    new_nodes, new_inits = [], []
    rewire: dict[tuple[int, int], str] = {}  # (node index, input index) -> dequantized tensor
    node_index = {id(n): i for i, n in enumerate(graph.node)}

    unknown = set(float_layers) - {n.name for n in graph.node if n.op_type in WEIGHTED_OPS}
    if unknown:
        raise EdgeresError(f"float layers {sorted(unknown)} are not Conv/Gemm nodes of this model")
    for tensor in points.activations:
        targets = [(node, k) for node in readers[tensor] for k, name in enumerate(node.input)
                   if name == tensor and _quantized_input(node, k) and node.name not in float_layers]
        if not targets:
            continue
        nodes, inits, dq_out = _qdq_nodes(tensor, activation_scale(scales, tensor), np.int8(0), None)
        new_nodes += nodes
        new_inits += inits
        for node, k in targets:
            rewire[(node_index[id(node)], k)] = dq_out
    made_by = {out: node for node in graph.node for out in node.output}
    for tensor in points.activations:
        resize = made_by.get(tensor)
        if resize is None or not _is_nearest_resize(resize) or resize.input[0] in points.activations:
            continue
        # Nearest-neighbour upsampling only copies values, so its input has the same range as its output.
        # Quantizing it too (same scale: exact, a re-quantization returns the same integers) lets the Conv
        # before it emit int8 and the Resize move int8 (TensorRT and the CPU kernels alike).
        nodes, inits, dq_out = _qdq_nodes(resize.input[0], activation_scale(scales, tensor), np.int8(0), None)
        new_nodes += nodes
        new_inits += inits
        rewire[(node_index[id(resize)], 0)] = dq_out
    for weight, axis in points.weights.items():
        if all(node.name in float_layers for node in readers[weight]):
            continue
        if weight not in scales.weights:
            raise EdgeresError(f"the scales have no range for weight '{weight}': they belong to another model export")
        amax = np.asarray(scales.weights[weight]["amax"], dtype=np.float32)
        if scales.weights[weight].get("axis", axis) != axis:
            raise EdgeresError(f"weight '{weight}' was calibrated on axis {scales.weights[weight]['axis']}, "
                               f"its op quantizes axis {axis}")
        qmax = QMAX if points.weight_qmax.get(weight, QMAX) == QMAX else signed_input_qmax
        nodes, inits, dq_out = _qdq_nodes(weight, amax / np.float32(qmax), np.zeros(len(amax), dtype=np.int8), axis)
        new_nodes += nodes
        new_inits += inits
        for node in readers[weight]:
            for k, name in enumerate(node.input):
                if name == weight:
                    rewire[(node_index[id(node)], k)] = dq_out
    for (i, k), name in rewire.items():
        graph.node[i].input[k] = name
    graph.node.extend(new_nodes)
    graph.initializer.extend(new_inits)
    topological_sort(graph)
    return model


def _is_nearest_resize(node) -> bool:
    if node.op_type != "Resize":
        return False
    mode = next((a.s for a in node.attribute if a.name == "mode"), b"nearest")
    return mode == b"nearest"


def _quantized_input(node, k: int) -> bool:
    """Which inputs of a reader take the dequantized tensor: activation inputs of weighted ops, Add inputs."""
    return (node.op_type in WEIGHTED_OPS and k == 0) or node.op_type == "Add"


def write_qdq_file(fp32_onnx: Path, scales: Scales, out: Path, float_layers: set[str] | frozenset[str] = frozenset()
                   ) -> None:
    import onnx

    from edgeres.fileio import atomic_path

    model = write_qdq(onnx.load(str(fp32_onnx)), scales, float_layers)
    onnx.checker.check_model(model)
    with atomic_path(Path(out)) as tmp:
        onnx.save(model, str(tmp))

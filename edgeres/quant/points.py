"""Where a ResNet graph is quantized, following TensorRT's Q/DQ placement recommendations.

- every Conv / ConvTranspose / Gemm: its activation input (per-tensor) and its weight (per-channel on
  the output-channel axis);
- weights of an op that reads a signed tensor (the stem reading the normalized image) on -64..64 instead of
  -127..127, so that CPUs without VNNI sum them exactly (``quant.signs``);
- every residual Add: the input that is not the main branch's Conv output (the identity or
  downsample branch), so TensorRT fuses the Add (and its ReLU) into the Conv as an int8 epilogue.

The CPU rewrite also needs the Add inputs that stay float in the TensorRT form; they are calibrated
in the same pass and stored as "cpu" entries, so the TensorRT artifact is never changed by them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeres.onnx_model.graph import WEIGHTED_OPS, initializers, producers, weight_axis
from edgeres.quant.signs import weight_qmax


@dataclass
class QuantPoints:
    activations: list[str] = field(default_factory=list)  # Q/DQ in the TensorRT artifact
    cpu_only: list[str] = field(default_factory=list)  # extra points the CPU kernels need
    weights: dict[str, int] = field(default_factory=dict)  # initializer name -> channel axis
    weight_qmax: dict[str, int] = field(default_factory=dict)  # initializer name -> largest int8 magnitude (signs.py)


def find_points(model) -> QuantPoints:
    """Quantization points of an FP32 ONNX model (cleaned by ``clean_exported_graph``)."""
    graph = model.graph
    inits = initializers(graph)
    made_by = producers(graph)
    points = QuantPoints()

    def add(name: str, target: list[str]) -> None:
        if name not in points.activations and name not in points.cpu_only:
            target.append(name)

    for node in graph.node:
        if node.op_type in WEIGHTED_OPS:
            add(node.input[0], points.activations)
            if len(node.input) > 1 and node.input[1] in inits:
                points.weights[node.input[1]] = weight_axis(node)
        elif node.op_type == "Add" and len(node.input) == 2 and not any(i in inits for i in node.input):
            from_conv = [made_by.get(i) is not None and made_by[i].op_type in WEIGHTED_OPS for i in node.input]
            residual = [i for i, conv in zip(node.input, from_conv, strict=True) if not conv] or [node.input[1]]
            for name in residual:
                add(name, points.activations)
    for node in graph.node:
        if node.op_type == "Add" and len(node.input) == 2 and not any(i in inits for i in node.input):
            for name in node.input:
                if name not in points.activations:
                    add(name, points.cpu_only)
    # A residual point may have been listed as cpu-only before its own Add was seen.
    points.cpu_only = [p for p in points.cpu_only if p not in points.activations]
    points.weight_qmax = weight_qmax(graph)
    return points


def activation_tensors(model) -> list[str]:
    """Every float activation tensor (graph inputs and node outputs): what an implicit TensorRT build
    can use a calibration-cache entry for."""
    graph = model.graph
    inits = initializers(graph)
    names = [i.name for i in graph.input if i.name not in inits]
    for node in graph.node:
        if node.op_type in ("Shape", "Constant"):
            continue
        names += [o for o in node.output if o]
    return names

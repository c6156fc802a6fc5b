"""Rewrite the TensorRT-form Q/DQ ONNX for ONNX Runtime's CPU integer kernels without changing any
quantized value.

1. Activations become uint8 with zero point 128 and the same scale: q_u8 = q_s8 + 128 exactly, so
   ONNX Runtime picks its fast u8 x s8 kernels (the s8 x s8 form runs slower than FP32 on x86).
2. Each activation Q is also placed in front of the ReLU / MaxPool that produces its tensor, at the
   same scale. Exact: both commute with a monotonic quantizer (Q(relu(x)) = relu(Q(x)) in the
   quantized domain), and it lets the producing Conv / Add emit int8 (QLinearConv, QLinearAdd).
3. Residual Add inputs that TensorRT leaves float (its fused epilogue reads them) get their own
   calibrated scale (the scales JSON's "cpu" entries), so the Add runs as QLinearAdd.
4. Weights are stored as int8 initializers (the values the Q node would produce), and Conv biases
   as int32 at scale s_x * s_w, as the integer kernels take them.
5. Each ReLU between a DequantizeLinear and a QuantizeLinear of the same scale and zero point runs on
   the uint8 values themselves as ``Clip(q, min=128)``: max(q_s8, 0) + 128 = max(q_u8, 128), and the
   upper end stays 255 = 127 + 128, TensorRT's int8 saturation. No float step is left around a ReLU.
BatchNorm is already folded into the Conv weights by the exporter before the weights were quantized,
so its scale is part of the per-channel weight scale in both targets.

``rewrite_for_openvino`` makes the OpenVINO engine's form: the TensorRT Q/DQ graph itself (OpenVINO
turns each Q/DQ pair into a FakeQuantize and runs int8 kernels from them), with the weights stored as
int8 initializers (step 4) and the activation Q also placed in front of each MaxPool (step 2), so the
first Conv writes int8 and the pooling runs on int8. Biases stay float and no point is added at the
residual Adds: the arithmetic is TensorRT's (float epilogue), not one more rounding.
"""

from __future__ import annotations

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.onnx_graph import consumers, initializers, producers, topological_sort
from edgeres.quant.scales import QMAX, Scales

COMMUTING_OPS = ("Relu", "MaxPool")
FLOAT_COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul", "NhwcConv")


def rewrite_for_cpu(qdq_model, scales: Scales):
    """Return the CPU form of a TensorRT-style Q/DQ model (a new onnx.ModelProto)."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(qdq_model)
    graph = model.graph
    _propagate_through_commuting_ops(graph)
    _quantize_float_add_inputs(graph, scales)
    _materialize_weights(graph)
    _quantize_biases(graph)
    _activations_to_uint8(graph)
    _integer_relus(graph)
    topological_sort(graph)
    return model


def rewrite_for_openvino(qdq_model):
    """Return the OpenVINO form of a TensorRT-style Q/DQ model (a new onnx.ModelProto; see the module doc)."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(qdq_model)
    graph = model.graph
    _propagate_through_commuting_ops(graph, ops=("MaxPool",))
    _materialize_weights(graph)
    _drop_unused_initializers(graph)
    topological_sort(graph)
    return model


def _new_qdq(graph, tensor: str, scale_name: str, zp_name: str, tag: str) -> str:
    from onnx import helper

    q_out, dq_out = f"{tensor}_{tag}_quantized", f"{tensor}_{tag}_dequantized"
    graph.node.append(helper.make_node("QuantizeLinear", [tensor, scale_name, zp_name], [q_out],
                                       name=f"{tensor}_{tag}_QuantizeLinear"))
    graph.node.append(helper.make_node("DequantizeLinear", [q_out, scale_name, zp_name], [dq_out],
                                       name=f"{tensor}_{tag}_DequantizeLinear"))
    return dq_out


def _propagate_through_commuting_ops(graph, ops: tuple[str, ...] = COMMUTING_OPS) -> None:
    """For every activation Q on the output of one of ``ops``, add the same Q/DQ on that op's input (recursively)."""
    made_by = producers(graph)
    inits = initializers(graph)
    todo = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    done = set()
    while todo:
        q = todo.pop()
        src = made_by.get(q.input[0])
        if src is None or src.op_type not in ops or (src.name, q.input[1]) in done:
            continue
        done.add((src.name, q.input[1]))
        upstream = src.input[0]
        up_src = made_by.get(upstream)
        if up_src is not None and up_src.op_type == "DequantizeLinear":
            continue  # already quantized there
        dq_out = _new_qdq(graph, upstream, q.input[1], q.input[2], "cpu")
        src.input[0] = dq_out
        made_by = producers(graph)
        todo.append(made_by[dq_out.replace("_dequantized", "_quantized")])


def _quantize_float_add_inputs(graph, scales: Scales) -> None:
    from onnx import numpy_helper

    made_by = producers(graph)
    inits = initializers(graph)
    for node in list(graph.node):
        if node.op_type != "Add" or len(node.input) != 2 or any(i in inits for i in node.input):
            continue
        for k, name in enumerate(node.input):
            src = made_by.get(name)
            if src is not None and src.op_type == "DequantizeLinear":
                continue
            entry = scales.activations.get(name)
            if entry is None:
                continue  # left float: the Add then runs in float (still correct)
            s_name, z_name = f"{name}_cpu_scale", f"{name}_cpu_zero_point"
            graph.initializer.extend([numpy_helper.from_array(np.float32(entry["amax"] / QMAX), s_name),
                                      numpy_helper.from_array(np.int8(0), z_name)])
            node.input[k] = _new_qdq(graph, name, s_name, z_name, "cpu")


def _materialize_weights(graph) -> None:
    """Q(float weight) -> int8 initializer read directly by the DQ (the same integers)."""
    from onnx import numpy_helper

    inits = initializers(graph)
    made_by = producers(graph)
    drop = []
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear"]:
        q = made_by.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in inits:
            continue
        w = numpy_helper.to_array(inits[q.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[q.input[1]]).astype(np.float32)
        axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        shape[axis] = -1
        q_w = np.clip(np.rint(w / scale.reshape(shape)), -128, 127).astype(np.int8)  # rint: round half to even
        name = q.input[0] + "_int8"
        graph.initializer.append(numpy_helper.from_array(q_w, name))
        dq.input[0] = name
        drop.append(q)
    _remove(graph, drop)


def _quantize_biases(graph) -> None:
    """Conv bias -> int32 at scale s_x * s_w (per channel), read through a DequantizeLinear."""
    from onnx import helper, numpy_helper

    inits = initializers(graph)
    made_by = producers(graph)
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or node.input[2] not in inits:
            continue
        x_dq, w_dq = made_by.get(node.input[0]), made_by.get(node.input[1])
        if x_dq is None or w_dq is None or "DequantizeLinear" not in (x_dq.op_type, w_dq.op_type) or \
                x_dq.op_type != w_dq.op_type:
            continue
        bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64)
        s_x = float(numpy_helper.to_array(inits[x_dq.input[1]]))
        s_w = numpy_helper.to_array(inits[w_dq.input[1]]).astype(np.float64)
        scale = (s_x * s_w).astype(np.float32)
        q_b = np.clip(np.rint(bias / scale), -(2**31), 2**31 - 1).astype(np.int32)
        base = node.input[2]
        graph.initializer.extend([numpy_helper.from_array(q_b, base + "_int32"),
                                  numpy_helper.from_array(scale, base + "_int32_scale"),
                                  numpy_helper.from_array(np.zeros_like(q_b), base + "_int32_zero_point")])
        graph.node.append(helper.make_node("DequantizeLinear", [base + "_int32", base + "_int32_scale",
                                                                base + "_int32_zero_point"],
                                           [base + "_int32_dequantized"], name=base + "_DequantizeLinear", axis=0))
        node.input[2] = base + "_int32_dequantized"


def _activations_to_uint8(graph) -> None:
    """int8 zero point 0 -> uint8 zero point 128 for every activation (per-tensor) Q/DQ."""
    from onnx import numpy_helper

    inits = initializers(graph)
    seen = set()
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zp_name = node.input[2]
        zp = inits.get(zp_name)
        if zp is None or zp_name in seen:
            continue
        value = numpy_helper.to_array(zp)
        if value.dtype != np.int8 or value.size != 1 or node.input[0].endswith("_int8"):
            continue
        seen.add(zp_name)
        if int(value) != 0:
            raise EdgeresError(f"activation zero point {zp_name} is {int(value)}, not 0: not a symmetric Q/DQ model")
        zp.CopyFrom(numpy_helper.from_array(np.uint8(128), zp_name))


def _integer_relus(graph) -> None:
    """DequantizeLinear -> Relu -> QuantizeLinear at one scale and uint8 zero point z -> Clip(q, min=z) on uint8."""
    from onnx import helper, numpy_helper

    inits = initializers(graph)
    made_by, readers = producers(graph), consumers(graph)

    def value(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    graph_outputs = {o.name for o in graph.output}
    drop = []
    for relu in [n for n in graph.node if n.op_type == "Relu"]:
        dq, after = made_by.get(relu.input[0]), readers.get(relu.output[0], [])
        if dq is None or {dq.output[0], relu.output[0]} & graph_outputs or dq.op_type != "DequantizeLinear" \
                or len(after) != 1 or after[0].op_type != "QuantizeLinear" or len(readers[dq.output[0]]) != 1 \
                or len(dq.input) < 3 or len(after[0].input) < 3:
            continue
        q = after[0]
        pairs = [(value(a), value(b)) for a, b in zip(dq.input[1:3], q.input[1:3], strict=True)]
        if any(a is None or b is None or a.dtype != b.dtype or a.tobytes() != b.tobytes() for a, b in pairs):
            continue  # another scale after the ReLU: the float step is the arithmetic, keep it
        zp = pairs[1][0]
        if zp.dtype != np.uint8 or zp.size != 1:
            continue
        graph.node.append(helper.make_node("Clip", [dq.input[0], dq.input[2]], [q.output[0]],
                                           name=relu.name + "_uint8"))
        drop += [dq, relu, q]
    _remove(graph, drop)


def _drop_unused_initializers(graph) -> None:
    """The float weights the int8 ones replaced (ONNX Runtime drops them itself when it optimizes)."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _remove(graph, nodes) -> None:
    ids = {id(n) for n in nodes}
    keep = [n for n in graph.node if id(n) not in ids]
    del graph.node[:]
    graph.node.extend(keep)


def float_compute_nodes(optimized_model, allowed: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Conv/Gemm-like nodes that still compute in float after ONNX Runtime's optimizations (except those whose
    name starts with an ``allowed`` node name: ONNX Runtime keeps the name when it fuses an activation in)."""
    return [f"{n.op_type} {n.name}" for n in optimized_model.graph.node
            if n.op_type in FLOAT_COMPUTE_OPS and not any(n.name.startswith(a) for a in allowed)]


def check_integer_kernels(optimized_model, allowed: set[str] | frozenset[str] = frozenset()) -> None:
    """Fail when any Conv or Gemm of the optimized CPU graph is not an integer kernel (``allowed``: kept float)."""
    left = float_compute_nodes(optimized_model, allowed)
    if left:
        raise EdgeresError(f"{len(left)} Conv/Gemm node(s) would run in float on this CPU, not as integer kernels: "
                           + ", ".join(left[:5]) + ("..." if len(left) > 5 else ""))



"""Rewrite the TensorRT-form Q/DQ ONNX for the CPU's integer kernels without changing any quantized value.

``rewrite_for_cpu`` makes the ONNX Runtime engine's form:

1. Each activation Q is also placed in front of the ReLU / MaxPool that produces its tensor, at the
   same scale. Exact: both commute with a monotonic quantizer (Q(relu(x)) = relu(Q(x)) in the
   quantized domain), and it lets the producing Conv / Add emit int8 (QLinearConv, QLinearAdd).
2. Residual Add inputs that TensorRT leaves float (its fused epilogue reads them) get their own
   calibrated scale (the scales JSON's "cpu" entries), so the Add runs as QLinearAdd.
3. Weights are stored as int8 initializers (the values the Q node would produce), and Conv biases
   as int32 at scale s_x * s_w, as the integer kernels take them.
4. Activations become uint8 at the same scale. A point whose values are never negative (a ReLU's or
   MaxPool's output, the average of one, or a point read only by a ReLU) is carried with zero point 0:
   TensorRT's int8 values 0..127 are the uint8 values themselves. Every other point (the normalized
   image, residual Add inputs) gets zero point 128: q_u8 = q_s8 + 128 exactly.
5. Each ReLU between a DequantizeLinear and a QuantizeLinear of one scale and zero point runs on the
   uint8 values as ``Clip(q, zp, zp + 127)``: with zero point 0 that is TensorRT's ReLU and its int8
   saturation at 127 in one step (a uint8 would otherwise keep 128..255). Every other zero-point-0
   point that nothing bounds yet gets ``Clip(q, 0, 127)``, so each of them holds exactly 0..127.
6. A Conv that reads a signed point (the stem reading the normalized image) reads it whole (uint8 + 128, 0..255)
   when no two of its weights can make a pair sum over 32767 (edgeres's own artifacts keep such weights on -64..64:
   ``quant.signs``). Otherwise (a Q/DQ model made elsewhere) it reads it split in two: p = max(q, 0) and
   n = max(-q, 0), both uint8 with zero point 0 (0..127 and 0..128), concatenated along the channels, with the
   weights [w, -w]: sum(p*w) + sum(n*(-w)) = sum(q*w), the same integers, at twice the input channels.

Why 4-6: on x86 without VNNI (AVX2, AVX-512 without VNNI) the u8 x s8 kernels of ONNX Runtime (MLAS) and
oneDNN multiply with ``vpmaddubsw``, which adds each pair of neighbouring products into a saturating
16-bit sum. With every uint8 input at most 128 and every int8 weight in -127..127 a pair is at most
2 x 128 x 127 = 32512 < 32767 (2 x 255 x 64 = 32640 for a signed input read whole): the fast kernels are then
exact on every x86 ISA, and no precision mode
(ONNX Runtime's ``session.x64quantprecision``, which swaps in slower u8 x u8 kernels) is needed.
``integer_kernel_bounds`` proves this per kernel on the graph ONNX Runtime actually runs.
BatchNorm is already folded into the Conv weights by the exporter before the weights were quantized,
so its scale is part of the per-channel weight scale in both targets.

``rewrite_for_openvino`` makes the OpenVINO engine's form: the TensorRT Q/DQ graph itself (OpenVINO
turns each Q/DQ pair into a FakeQuantize and runs int8 kernels from them), with the weights stored as
int8 initializers (step 3) and the activation Q moved in front of each MaxPool (step 1: the pooled values
are then on its grid already, so the Q/DQ behind it goes), so the first Conv writes int8 and the pooling
runs on int8. Non-negative points become uint8 with zero point 0 behind a float ``Clip(x, 0, 127 s)`` (so
OpenVINO's low-precision transformations give oneDNN u8 sources of 0..127 without a zero point; a ReLU
whose only reader is that Clip is folded into it), and a signed input is read as in step 6 (the network's
input, read whole, quantized in explicit float steps: ``_integer_valued_signed_inputs``). Biases stay
float and no point is added at the residual Adds: the arithmetic is TensorRT's (float epilogue), not one
more rounding.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.onnx_model.graph import consumers, initializers, producers, topological_sort
from edgeres.quant.scales import QMAX, Scales
from edgeres.quant.signs import ORDER_KEEPING_OPS, nonnegative_tensors

COMMUTING_OPS = ("Relu", "MaxPool")
FLOAT_COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul", "NhwcConv")


def rewrite_for_cpu(qdq_model, scales: Scales, split_signed_inputs: bool = True):
    """Return the ONNX Runtime form of a TensorRT-style Q/DQ model (a new onnx.ModelProto; see the module doc).

    ``split_signed_inputs=False`` skips step 6: for CPUs that sum int8 products in 32 bits (VNNI, AMX, ARM),
    where the stem reading uint8 + 128 is exact without it (``backends.cpu_int8.int8_cpu_target``)."""
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
    _cap_unsigned_points(graph)
    if split_signed_inputs:
        _split_signed_conv_inputs(graph)
    _drop_dead_nodes(graph)
    _drop_unused_initializers(graph)
    topological_sort(graph)
    return model


def rewrite_for_openvino(qdq_model, split_signed_inputs: bool = True):
    """Return the OpenVINO form of a TensorRT-style Q/DQ model (a new onnx.ModelProto; see the module doc);
    ``split_signed_inputs`` as in ``rewrite_for_cpu``."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(qdq_model)
    graph = model.graph
    _propagate_through_commuting_ops(graph, ops=("MaxPool",))
    _drop_requantization(graph, ops=("MaxPool",))
    _materialize_weights(graph)
    _unsigned_float_points(graph)
    _relus_into_caps(graph)
    if split_signed_inputs:
        _split_signed_conv_inputs(graph, float_form=True)
    _integer_valued_signed_inputs(graph)
    _drop_dead_nodes(graph)
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


def _drop_requantization(graph, ops: tuple[str, ...]) -> None:
    """Q/DQ after one of ``ops`` that reads DQ values of the same scale and zero point: the op's output is already on
    that grid (max of grid values), so the pair returns the same numbers; its readers read the op's output instead.
    Exact, and for OpenVINO it saves a FakeQuantize with two layout reorders around it behind the pooling."""
    made_by, readers = producers(graph), consumers(graph)
    graph_outputs = {o.name for o in graph.output}
    for q in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        src = made_by.get(q.input[0])
        before = made_by.get(src.input[0]) if src is not None and src.op_type in ops else None
        after = readers.get(q.output[0], [])
        if before is None or before.op_type != "DequantizeLinear" or list(before.input[1:]) != list(q.input[1:]) or \
                not after or any(r.op_type != "DequantizeLinear" or list(r.input[1:]) != list(q.input[1:])
                                 or r.output[0] in graph_outputs for r in after):
            continue
        for dq in after:
            for reader in readers.get(dq.output[0], []):
                for k, name in enumerate(reader.input):
                    if name == dq.output[0]:
                        reader.input[k] = src.output[0]


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
    """int8 zero point 0 -> uint8 zero point 0 (points that are never negative) or 128 (the others), per
    activation (per-tensor) Q/DQ; points that share a zero point initializer share the choice."""
    from onnx import numpy_helper

    inits = initializers(graph)
    readers = consumers(graph)
    nonnegative = nonnegative_tensors(graph)
    points: dict[str, list] = defaultdict(list)
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zp = inits.get(node.input[2])
        if zp is None or node.input[0].endswith("_int8"):
            continue
        value = numpy_helper.to_array(zp)
        if value.dtype != np.int8 or value.size != 1:
            continue
        if int(value) != 0:
            raise EdgeresError(f"activation zero point {node.input[2]} is {int(value)}, not 0: not a symmetric "
                               "Q/DQ model")
        points[node.input[2]].append(node)

    def read_only_by_relus(q) -> bool:  # its negative values never matter: Q(x) then ReLU = clamp at 0
        return all(dq.op_type == "DequantizeLinear" and readers[dq.output[0]]
                   and all(r.op_type == "Relu" for r in readers[dq.output[0]]) for dq in readers[q.output[0]])

    for zp_name, nodes in points.items():
        quantizers = [n for n in nodes if n.op_type == "QuantizeLinear"]
        unsigned = bool(quantizers) and all(q.input[0] in nonnegative or read_only_by_relus(q) for q in quantizers)
        inits[zp_name].CopyFrom(numpy_helper.from_array(np.uint8(0 if unsigned else 128), zp_name))


def _unsigned_float_points(graph) -> None:
    """OpenVINO form of step 4: each point whose quantizers all read non-negative values becomes uint8 with zero
    point 0, each of its quantizers reading ``Clip(x, 0, 127 s)`` (TensorRT's saturation at 127, in float, where
    OpenVINO fuses it into the producing kernel) unless its input is bounded there already."""
    from onnx import helper, numpy_helper

    inits = initializers(graph)
    nonnegative = nonnegative_tensors(graph)
    points: dict[str, list] = defaultdict(list)
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and \
                node.input[2] in inits and not node.input[0].endswith("_int8"):
            value = numpy_helper.to_array(inits[node.input[2]])
            if value.dtype == np.int8 and value.size == 1 and int(value) == 0:
                points[node.input[2]].append(node)
    for zp_name, nodes in points.items():
        quantizers = [n for n in nodes if n.op_type == "QuantizeLinear"]
        if not quantizers or not all(q.input[0] in nonnegative for q in quantizers):
            continue
        inits[zp_name].CopyFrom(numpy_helper.from_array(np.uint8(0), zp_name))
        for q in quantizers:
            if _float_bound_in_steps(graph, q.input[0], q.input[1]) <= QMAX:
                continue
            cap = _float_cap(graph, q.input[1], QMAX)
            clipped = q.input[0] + "_capped"
            graph.node.append(helper.make_node("Clip", [q.input[0], _float_constant(graph, 0.0), cap], [clipped],
                                               name=q.name + "_cap"))
            q.input[0] = clipped


def _relus_into_caps(graph) -> None:
    """Relu -> Clip(x, 0, 127 s) becomes Clip(x, 0, 127 s) alone where the Clip is the Relu's only reader: the same
    values (the Clip's lower bound is the ReLU), and one post-op less for OpenVINO to fuse into the producing conv or
    residual Add (on an AVX2 EPYC the engine ran 1-2 % faster: benchmarks/openvino_int8_forms.py)."""
    from onnx import numpy_helper

    made_by, readers, inits = producers(graph), consumers(graph), initializers(graph)
    graph_outputs = {o.name for o in graph.output}
    drop = []
    for clip in [n for n in graph.node if n.op_type == "Clip" and len(n.input) > 1 and n.input[1] in inits]:
        relu = made_by.get(clip.input[0])
        if relu is None or relu.op_type != "Relu" or relu.output[0] in graph_outputs or \
                len(readers.get(relu.output[0], [])) != 1 or float(numpy_helper.to_array(inits[clip.input[1]])) != 0.0:
            continue
        clip.input[0] = relu.input[0]
        drop.append(relu)
    _remove(graph, drop)


def _float_constant(graph, value: float) -> str:
    from onnx import numpy_helper

    name = f"edgeres_float_{value!r}"
    if not any(i.name == name for i in graph.initializer):
        graph.initializer.append(numpy_helper.from_array(np.float32(value), name))
    return name


def _float_cap(graph, scale_name: str, steps: int) -> str:
    """A float32 initializer holding ``steps`` x the scale: round(min(x, it) / s) = min(round(x / s), steps)."""
    from onnx import numpy_helper

    name = f"{scale_name}_times_{steps}"
    if not any(i.name == name for i in graph.initializer):
        scale = numpy_helper.to_array(initializers(graph)[scale_name]).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(np.float32(scale * np.float32(steps)), name))
    return name


def _integer_relus(graph) -> None:
    """DequantizeLinear -> Relu -> QuantizeLinear at one scale and uint8 zero point z -> Clip(q, z, z + 127) on
    uint8: ReLU and TensorRT's int8 saturation at 127, on the integers."""
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
        cap = _uint8_constant(graph, int(zp) + QMAX)
        graph.node.append(helper.make_node("Clip", [dq.input[0], dq.input[2], cap], [q.output[0]],
                                           name=relu.name + "_uint8"))
        drop += [dq, relu, q]
    _remove(graph, drop)


def _cap_unsigned_points(graph) -> None:
    """Clip(q, 0, 127) after each zero-point-0 activation quantizer whose values nothing bounds to 0..127 yet
    (TensorRT saturates int8 at 127; QuantizeLinear to uint8 would keep 128..255)."""
    from onnx import helper

    readers = consumers(graph)
    graph_outputs = {o.name for o in graph.output}
    for q in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        if _zero_point(graph, q) != 0 or q.output[0] in graph_outputs:
            continue
        after = readers.get(q.output[0], [])
        if after and all(r.op_type == "Clip" and uint8_cap(graph, r.output[0]) <= QMAX for r in after):
            continue  # already an integer ReLU
        if _float_bound_in_steps(graph, q.input[0], q.input[1]) <= QMAX:
            continue  # e.g. MaxPool over capped values at the same scale
        capped = q.output[0] + "_capped"
        for reader in after:
            for k, name in enumerate(reader.input):
                if name == q.output[0]:
                    reader.input[k] = capped
        graph.node.append(helper.make_node("Clip", [q.output[0], q.input[2], _uint8_constant(graph, QMAX)],
                                           [capped], name=q.name + "_cap"))


def _split_signed_conv_inputs(graph, float_form: bool = False) -> None:
    """A Conv reading a signed point (the stem reading the normalized image) reads [max(q, 0), max(-q, 0)] with
    weights [w, -w] instead: the same integer sums, from uint8 inputs of at most 128 (the module doc, step 6).

    Args:
        graph: the graph, changed in place.
        float_form: OpenVINO's form (the signed point is int8 with zero point 0; each half is bounded by a float
            Clip before its quantizer and the halves are concatenated dequantized) instead of ONNX Runtime's (the
            signed point is uint8 with zero point 128; the halves are clipped and concatenated as uint8).
    """
    from onnx import helper, numpy_helper

    inits = initializers(graph)
    made_by = producers(graph)
    split_of: dict[str, str] = {}
    signed_zero_point = 0 if float_form else 128
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        x_dq, w_dq = made_by.get(conv.input[0]), made_by.get(conv.input[1])
        if x_dq is None or w_dq is None or x_dq.op_type != "DequantizeLinear" or w_dq.op_type != "DequantizeLinear":
            continue
        q = made_by.get(x_dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or _zero_point(graph, q) != signed_zero_point or \
                _zero_point_dtype(graph, q) != (np.int8 if float_form else np.uint8) or \
                w_dq.input[0] not in inits or next((a.i for a in conv.attribute if a.name == "group"), 1) != 1:
            continue
        w = numpy_helper.to_array(inits[w_dq.input[0]])
        if w.dtype != np.int8 or int(w.min()) < -QMAX:
            continue  # -(-128) is not an int8: keep the shifted form (the saturation check then says so)
        if max(pair_sums(_weights_per_output(conv, w.astype(np.int64)))) * 255 <= INT16_MAX:
            continue  # weights of at most 64 (quant.signs): uint8 + 128 inputs cannot saturate, no split needed
        x, scale = q.input[0], q.input[1]
        if x not in split_of:
            split_of[x] = _signed_split(graph, x, scale, float_form)
        w_name = w_dq.input[0] + "_split"
        graph.initializer.append(numpy_helper.from_array(np.concatenate([w, -w], axis=1), w_name))
        graph.node.append(helper.make_node("DequantizeLinear", [w_name, *w_dq.input[1:]], [w_name + "_dequantized"],
                                           name=w_name + "_DequantizeLinear", axis=next(
                                               (a.i for a in w_dq.attribute if a.name == "axis"), 1)))
        conv.input[0], conv.input[1] = split_of[x], w_name + "_dequantized"


def split_convs(model) -> list[str]:
    """The Convs of a CPU form that read a signed input split in two (step 6)."""
    return [n.name for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1
            and n.input[1].endswith("_split_dequantized")]


def _integer_valued_signed_inputs(graph) -> None:
    """OpenVINO form: a Conv reading the graph's input (the stem reading the normalized image; with the normalization
    in the network, its output) as signed int8, whole,
    reads ``Q(Clip(Round(x / s), -128, 127), 1)`` dequantized at s: the same integers as ``Q(x, s)``. OpenVINO
    evaluates a signed quantizer as one FakeQuantize over [-128 s, 127 s], whose offset arithmetic rounds an input
    within a float step of a rounding tie the other way (measured on the stem: a pixel off by one step, 64 steps of
    the conv's sum, in each of 3 random images). An image's normalized pixels take only 256 values per channel, so
    such a pixel value would recur in every image; on integer-valued floats the FakeQuantize is exact, and the
    division and rounding cost nothing measurable. Quantizers inside the network keep their FakeQuantize (fused into
    the op that produces their input; a tie there is the one LSB the epilogue may differ by anyway)."""
    from onnx import helper

    inits, made_by = initializers(graph), producers(graph)

    def from_input(tensor: str) -> bool:  # the graph's input, or what normalizing it in the network makes of it
        node = made_by.get(tensor)
        return tensor not in inits if node is None else node.op_type in ("Cast", "Transpose", "Sub", "Div", "Mul") \
            and all(from_input(i) or i in inits for i in node.input)

    done = set()
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        x_dq = made_by.get(conv.input[0])
        q = made_by.get(x_dq.input[0]) if x_dq is not None and x_dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or q.name in done or not from_input(q.input[0]) or \
                q.input[1] not in inits or _zero_point(graph, q) != 0 or _zero_point_dtype(graph, q) != np.int8:
            continue
        done.add(q.name)
        x, scale = q.input[0], q.input[1]
        graph.node.extend([
            helper.make_node("Div", [x, scale], [f"{x}_in_steps"], name=f"{q.name}_Div"),
            helper.make_node("Round", [f"{x}_in_steps"], [f"{x}_rounded"], name=f"{q.name}_Round"),
            helper.make_node("Clip", [f"{x}_rounded", _float_constant(graph, -128.0), _float_constant(graph, 127.0)],
                             [f"{x}_integers"], name=f"{q.name}_Clip")])
        q.input[0], q.input[1] = f"{x}_integers", _float_constant(graph, 1.0)


def _signed_split(graph, x: str, scale: str, float_form: bool) -> str:
    """Nodes computing [max(q, 0), max(-q, 0)] of the int8 q = Q(x) as dequantized uint8 values; returns the
    tensor name. Round half to even is symmetric, so Q(-x) = -Q(x) before the clamps."""
    from onnx import helper

    zero = _uint8_constant(graph, 0)
    neg = helper.make_node("Neg", [x], [f"{x}_negated"], name=f"{x}_Neg")
    graph.node.append(neg)
    halves = []
    for tag, src, cap in (("positive", x, QMAX), ("negative", neg.output[0], QMAX + 1)):
        quantized = f"{x}_{tag}_quantized"
        if float_form:
            graph.node.extend([
                helper.make_node("Clip", [src, _float_constant(graph, 0.0), _float_cap(graph, scale, cap)],
                                 [f"{x}_{tag}_capped"], name=f"{x}_{tag}_Clip"),
                helper.make_node("QuantizeLinear", [f"{x}_{tag}_capped", scale, zero], [quantized],
                                 name=f"{x}_{tag}_QuantizeLinear"),
                helper.make_node("DequantizeLinear", [quantized, scale, zero], [f"{x}_{tag}"],
                                 name=f"{x}_{tag}_DequantizeLinear")])
        else:
            graph.node.extend([
                helper.make_node("QuantizeLinear", [src, scale, zero], [quantized], name=f"{x}_{tag}_QuantizeLinear"),
                helper.make_node("Clip", [quantized, zero, _uint8_constant(graph, cap)], [f"{x}_{tag}"],
                                 name=f"{x}_{tag}_Clip")])
        halves.append(f"{x}_{tag}")
    graph.node.append(helper.make_node("Concat", halves, [f"{x}_split"], name=f"{x}_split_Concat", axis=1))
    if float_form:
        return f"{x}_split"
    graph.node.append(helper.make_node("DequantizeLinear", [f"{x}_split", scale, zero], [f"{x}_split_dequantized"],
                                       name=f"{x}_split_DequantizeLinear"))
    return f"{x}_split_dequantized"


def _zero_point(graph, node) -> int | None:
    """The scalar zero point of a Q/DQ node, or None."""
    from onnx import numpy_helper

    init = next((i for i in graph.initializer if len(node.input) > 2 and i.name == node.input[2]), None)
    if init is None:
        return None
    value = numpy_helper.to_array(init)
    return int(value) if value.size == 1 else None


def _zero_point_dtype(graph, node):
    from onnx import numpy_helper

    init = next((i for i in graph.initializer if len(node.input) > 2 and i.name == node.input[2]), None)
    return None if init is None else numpy_helper.to_array(init).dtype.type


def _uint8_constant(graph, value: int) -> str:
    """The name of a scalar uint8 initializer holding ``value`` (made once per graph)."""
    from onnx import numpy_helper

    name = f"edgeres_uint8_{value}"
    if not any(i.name == name for i in graph.initializer):
        graph.initializer.append(numpy_helper.from_array(np.uint8(value), name))
    return name


def uint8_cap(graph, tensor: str) -> int:
    """The largest value an 8-bit integer tensor of ``graph`` can hold, as its producers bound it (255 when
    nothing does; for an int8 tensor: 255, what x86 kernels make of it after adding 128)."""
    from onnx import numpy_helper

    made_by = producers(graph)
    inits = initializers(graph)
    seen: set[str] = set()

    def cap(name: str) -> int:
        node = made_by.get(name)
        if node is None or name in seen:
            return 255
        seen.add(name)
        if node.op_type == "Clip":
            upper = 255 if len(node.input) < 3 or node.input[2] not in inits else \
                int(numpy_helper.to_array(inits[node.input[2]]))
            return min(upper, cap(node.input[0]))
        if node.op_type == "Concat":
            return max(cap(i) for i in node.input)
        if node.op_type in ORDER_KEEPING_OPS or node.op_type == "NhwcMaxPool":  # ONNX Runtime's NHWC layout
            return cap(node.input[0])
        if node.op_type == "QuantizeLinear" and _zero_point(graph, node) == 0:  # Q(Clip(x, ., c)) <= round(c / s)
            clip = made_by.get(node.input[0])
            if clip is not None and clip.op_type == "Clip" and len(clip.input) > 2 and clip.input[2] in inits and \
                    node.input[1] in inits:
                steps = float(numpy_helper.to_array(inits[clip.input[2]])) / float(numpy_helper.to_array(
                    inits[node.input[1]]))
                return min(255, int(np.rint(steps)))
        return 255

    return cap(tensor)


def _float_bound_in_steps(graph, tensor: str, scale_name: str) -> float:
    """An upper bound of a float tensor in steps of the scale ``scale_name`` (inf when unknown): pooling or
    reshaping the dequantized values of a capped uint8 tensor at that same scale keeps its cap."""
    from onnx import numpy_helper

    made_by, inits = producers(graph), initializers(graph)
    node = made_by.get(tensor)
    while node is not None and node.op_type in ORDER_KEEPING_OPS:
        node = made_by.get(node.input[0])
    if node is None or node.op_type != "DequantizeLinear" or _zero_point(graph, node) != 0 or \
            node.input[1] not in inits or scale_name not in inits or \
            numpy_helper.to_array(inits[node.input[1]]).tobytes() != numpy_helper.to_array(inits[scale_name]).tobytes():
        return float("inf")
    return float(uint8_cap(graph, node.input[0]))


def _drop_dead_nodes(graph) -> None:
    """Nodes whose outputs nothing reads any more (the quantizer a split stem no longer uses)."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            return
        _remove(graph, dead)


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


# Integer kernels (ONNX Runtime's optimized graph, or the Q/DQ form OpenVINO reads): op type -> (activation
# input, weight input).
INTEGER_KERNEL_INPUTS = {"QLinearConv": (0, 3), "QGemm": (0, 3), "QLinearMatMul": (0, 3), "ConvInteger": (0, 1),
                         "MatMulInteger": (0, 1), "MatMulIntegerToFloat": (0, 1)}
INT16_MAX = 32767


@dataclass
class KernelBound:
    """The largest sums of two neighbouring products one integer kernel can form (``vpmaddubsw`` keeps each in a
    saturating int16 on x86 without VNNI)."""

    name: str
    input_cap: int  # the largest uint8 input value
    weight_max: int  # the largest int8 weight magnitude
    positive: int  # the largest pair sum: input_cap x the two largest positive weights of one output
    negative: int  # the largest |pair sum| below zero, likewise

    @property
    def pair_max(self) -> int:
        return max(self.positive, self.negative)

    @property
    def exact(self) -> bool:
        return self.positive <= INT16_MAX and self.negative <= INT16_MAX + 1


def integer_kernel_bounds(model) -> list[KernelBound]:
    """Bound every u8 x s8 product pair of a graph's integer kernels: ONNX Runtime's optimized graph (QLinearConv,
    QGemm, ...) or a Q/DQ graph (a Conv/Gemm reading DequantizeLinear outputs, as OpenVINO turns them into int8
    kernels). A kernel is exact on x86 without VNNI when no pair can leave int16."""
    from onnx import numpy_helper

    graph = model.graph
    inits, made_by = initializers(graph), producers(graph)
    bounds = []
    for node in graph.node:
        if node.op_type in INTEGER_KERNEL_INPUTS:
            x_pos, w_pos = INTEGER_KERNEL_INPUTS[node.op_type]
            activation, weight = node.input[x_pos], node.input[w_pos]
        elif node.op_type in ("Conv", "Gemm", "MatMul") and _dequantized_from(graph, node.input[0]) and \
                made_by.get(node.input[1]) is not None and made_by[node.input[1]].op_type == "DequantizeLinear":
            activation, weight = node.input[0], made_by[node.input[1]].input[0]
        else:
            continue
        if weight not in inits or inits[weight].data_type != onnx_int8():
            continue  # u8 weights (ONNX Runtime's own u8 x u8 precision path): no vpmaddubsw
        w = numpy_helper.to_array(inits[weight]).astype(np.int64)
        sources = _dequantized_from(graph, activation) or [activation]
        cap = max(_integer_cap(graph, t) for t in sources)
        top_pos, top_neg = pair_sums(_weights_per_output(node, w))
        bounds.append(KernelBound(node.name, cap, int(np.abs(w).max()), cap * top_pos, cap * top_neg))
    return bounds


def pair_sums(per_output: np.ndarray) -> tuple[int, int]:
    """The largest sum of two positive weights of one output, and of two negative ones (as a magnitude): times the
    largest uint8 input, the largest pair sum ``vpmaddubsw`` can form, whichever two weights it pairs."""
    top_pos = int(np.sort(np.clip(per_output, 0, None), axis=1)[:, -2:].sum(axis=1).max())
    top_neg = int(np.sort(np.clip(-per_output, 0, None), axis=1)[:, -2:].sum(axis=1).max())
    return top_pos, top_neg


def _dequantized_from(graph, tensor: str) -> list[str]:
    """The 8-bit tensors a float tensor is the dequantized value of (directly, or concatenated); empty if not."""
    node = producers(graph).get(tensor)
    if node is not None and node.op_type == "DequantizeLinear":
        return [node.input[0]]
    if node is not None and node.op_type == "MaxPool":  # the max of grid values: the same integers, pooled
        return _dequantized_from(graph, node.input[0])
    if node is not None and node.op_type == "Concat":
        parts = [_dequantized_from(graph, i) for i in node.input]
        return [t for p in parts for t in p] if all(parts) else []
    return []


def _integer_cap(graph, tensor: str) -> int:
    """``uint8_cap``, or 255 for an int8 tensor (x86 kernels add 128 to it)."""
    made = producers(graph).get(tensor)
    if made is not None and made.op_type == "QuantizeLinear" and _zero_point_dtype(graph, made) == np.int8:
        return 255
    return uint8_cap(graph, tensor)


def onnx_int8() -> int:
    import onnx

    return onnx.TensorProto.INT8


def _weights_per_output(node, w: np.ndarray) -> np.ndarray:
    """One row of weights per output channel."""
    if node.op_type in ("Gemm", "QGemm"):
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return w if trans_b else w.T
    if node.op_type in ("MatMul", "MatMulInteger", "MatMulIntegerToFloat", "QLinearMatMul"):
        return w.reshape(-1, w.shape[-1]).T
    return w.reshape(w.shape[0], -1)


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



"""Small ONNX graph helpers shared by export, quantization and the CPU rewrite."""

from __future__ import annotations

from collections import defaultdict

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm")


def module_path(node_name: str) -> str:
    """'/layer1/layer1.0/conv1/Conv' -> 'layer1.0.conv1' (the torch module the exporter named the node after)."""
    path: list[str] = []
    for part in [p for p in node_name.split("/") if p][:-1]:
        # Children of a Sequential are scoped as 'parent.index': they replace their parent's segment.
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path) if path else node_name.strip("/")


def producers(graph) -> dict:
    """tensor name -> the node that outputs it."""
    return {out: node for node in graph.node for out in node.output}


def consumers(graph) -> dict:
    """tensor name -> the nodes that read it."""
    table = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            table[name].append(node)
    return table


def initializers(graph) -> dict:
    return {init.name: init for init in graph.initializer}


def weight_axis(node) -> int:
    """The output-channel axis of a weighted op's weight: 0 for Conv and Gemm(transB=1), 1 for ConvTranspose
    and Gemm(transB=0)."""
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return 0


def clean_exported_graph(model) -> None:
    """Give every Conv/Gemm its own, readably named weight and bias initializers (in place).

    The TorchScript exporter shares identical constants through Identity nodes and names folded
    Conv+BatchNorm weights 'onnx::Conv_193'; after this, weights are 'layer1.0.conv1.weight' and no
    Identity of an initializer remains, so scales JSON keys and Q/DQ placement are stable.
    """
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    inits = initializers(graph)
    identity_of = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in inits}
    used_names = set(inits)
    created: set[str] = set()
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        base = module_path(node.name)
        for idx, role in ((1, "weight"), (2, "bias")):
            if idx >= len(node.input) or not node.input[idx]:
                continue
            src = identity_of.get(node.input[idx], node.input[idx])
            if src not in inits:
                continue
            name = f"{base}.{role}"
            while name in used_names and name != src:
                name += "_"
            if name != src:
                array = np.array(numpy_helper.to_array(inits[src]))
                graph.initializer.append(numpy_helper.from_array(array, name))
                used_names.add(name)
                created.add(name)
            node.input[idx] = name
    # Drop Identity nodes nothing reads any more, and those whose output name is now an initializer of the same
    # value (the exporter names a shared constant's Identity after one of its readers, e.g. 'offset.2.bias').
    read = {name for node in graph.node for name in node.input}
    keep_nodes = [n for n in graph.node if not (n.op_type == "Identity" and n.input[0] in inits
                                                and (n.output[0] not in read or n.output[0] in created))]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep_inits = [i for i in graph.initializer if i.name in read]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)


def topological_sort(graph) -> None:
    """Reorder ``graph.node`` so every node follows the producers of its inputs (stable otherwise)."""
    import heapq

    made_by = {}
    for i, node in enumerate(graph.node):
        for out in node.output:
            made_by[out] = i
    waiting = {i: {made_by[x] for x in node.input if x in made_by and made_by[x] != i}
               for i, node in enumerate(graph.node)}
    readers = defaultdict(list)
    for i, deps in waiting.items():
        for d in deps:
            readers[d].append(i)
    ready = [i for i, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for r in readers[i]:
            waiting[r].discard(i)
            if not waiting[r]:
                heapq.heappush(ready, r)
    if len(order) != len(graph.node):
        raise ValueError("graph has a cycle")
    nodes = [graph.node[i] for i in order]
    del graph.node[:]
    graph.node.extend(nodes)


ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16"}


def onnx_file_io(path) -> tuple[list[tuple], list[tuple]]:
    """Inputs and outputs of an ONNX file as (name, numpy dtype name, shape), a named or unknown dimension -1
    (initializers listed as inputs left out; weights in external data files are not read)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}

    def spec(value) -> tuple:
        t = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        return value.name, ONNX_DTYPES.get(t.elem_type, f"onnx-{t.elem_type}"), dims

    return [spec(v) for v in model.graph.input if v.name not in inits], [spec(v) for v in model.graph.output]

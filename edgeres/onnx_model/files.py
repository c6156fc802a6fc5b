"""Checks on ONNX files before anything runs them: present, parseable, external data kept inside
the model's folder (a file may not make a runtime read ``../../etc/...``).
"""

from __future__ import annotations

from pathlib import Path

from edgeres.errors import EdgeresError


def check_onnx_file(path: Path) -> None:
    """Raise one clear EdgeresError if ``path`` is missing, not ONNX, or has external data outside its folder."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    path = Path(path)
    if not path.is_file():
        raise EdgeresError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise EdgeresError(f"{path} is not a readable ONNX model ({type(exc).__name__}); re-export it") from None
    if not model.graph.node:
        raise EdgeresError(f"{path} is not a usable ONNX model: its graph has no nodes")
    folder = path.parent.resolve()
    for tensor in _all_tensors(model.graph):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not target.is_relative_to(folder):
            raise EdgeresError(
                f"{path}: tensor '{tensor.name}' points its external data outside the model's folder "
                f"({location}); external data must live beside the model"
            )
        if not target.is_file():
            raise EdgeresError(f"{path}: external data file {location} of tensor '{tensor.name}' is missing")


def _all_tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            for sub in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                yield from _all_tensors(sub)
